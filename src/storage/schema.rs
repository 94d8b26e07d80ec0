// The one schema for both backends. Only types that diesel's MultiConnection supports on
// every backend are used: ids are UUID text, JSON is text, times are UTC timestamps.

diesel::table! {
    server_secrets (name) {
        name -> Text,
        value -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    users (id) {
        id -> Text,
        email -> Text,
        email_key -> Text,
        password_hash -> Text,
        role -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    api_keys (id) {
        id -> Text,
        name -> Text,
        role -> Text,
        prefix -> Text,
        secret_hash -> Text,
        created_by -> Nullable<Text>,
        created_at -> Timestamp,
        last_used_at -> Nullable<Timestamp>,
        revoked_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    lists (id) {
        id -> Text,
        name -> Text,
        description -> Text,
        opt_in -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    contacts (id) {
        id -> Text,
        email -> Text,
        email_key -> Text,
        attributes -> Text,
        company -> Nullable<Text>,
        country -> Nullable<Text>,
        status -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    contact_tags (contact_id, tag) {
        contact_id -> Text,
        tag -> Text,
    }
}

diesel::table! {
    contact_lists (contact_id, list_id) {
        contact_id -> Text,
        list_id -> Text,
        added_at -> Timestamp,
    }
}

diesel::joinable!(contact_tags -> contacts (contact_id));
diesel::joinable!(contact_lists -> contacts (contact_id));
diesel::joinable!(contact_lists -> lists (list_id));
diesel::joinable!(api_keys -> users (created_by));

diesel::allow_tables_to_appear_in_same_query!(
    server_secrets,
    users,
    api_keys,
    lists,
    contacts,
    contact_tags,
    contact_lists,
);
