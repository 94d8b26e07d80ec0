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
        session_generation -> BigInt,
        totp_secret -> Nullable<Text>,
        totp_last_step -> Nullable<BigInt>,
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
        locale -> Nullable<Text>,
    }
}

diesel::table! {
    console_sessions (id) {
        id -> Text,
        user_id -> Text,
        user_generation -> BigInt,
        csrf_token -> Text,
        created_at -> Timestamp,
        expires_at -> Timestamp,
        last_seen_at -> Timestamp,
        second_factor_pending -> Bool,
    }
}

diesel::table! {
    brands (id) {
        id -> Text,
        name -> Text,
        legal_name -> Text,
        postal_address -> Text,
        privacy_policy_url -> Text,
        accent_color -> Nullable<Text>,
        background_color -> Nullable<Text>,
        footer -> Nullable<Text>,
        logo -> Nullable<Text>,
        logo_type -> Nullable<Text>,
        is_default -> Integer,
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

diesel::table! {
    consent_events (id) {
        id -> Text,
        seq -> BigInt,
        contact_id -> Text,
        purpose -> Text,
        action -> Text,
        basis -> Text,
        requires_confirmation -> Integer,
        method -> Text,
        form_id -> Nullable<Text>,
        form_version -> Nullable<Integer>,
        consent_text_sha256 -> Nullable<Text>,
        actor -> Text,
        ip -> Nullable<Text>,
        user_agent -> Nullable<Text>,
        source_url -> Nullable<Text>,
        evidence_salt -> Nullable<Text>,
        ip_digest -> Text,
        user_agent_digest -> Text,
        source_url_digest -> Text,
        occurred_at -> Timestamp,
        prev_hash -> Text,
        hash -> Text,
        manifest_id -> Nullable<Text>,
        proof -> Nullable<Text>,
        email_digest -> Text,
    }
}

diesel::table! {
    consent_leaves (leaf_index) {
        leaf_index -> BigInt,
        event_id -> Text,
        leaf_hash -> Binary,
    }
}

diesel::table! {
    consent_tree_nodes (level, node_index) {
        level -> Integer,
        node_index -> BigInt,
        hash -> Binary,
    }
}

diesel::table! {
    consent_unsequenced (event_id) {
        event_id -> Text,
        seq -> BigInt,
    }
}

diesel::table! {
    consent_checkpoints (tree_size) {
        tree_size -> BigInt,
        root_hash -> Binary,
        note -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    consent_texts (sha256) {
        sha256 -> Text,
        text -> Text,
    }
}

diesel::table! {
    suppressions (email_hash) {
        email_hash -> Text,
        reason -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    forms (id) {
        id -> Text,
        slug -> Text,
        current_version -> Integer,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    form_versions (form_id, version) {
        form_id -> Text,
        version -> Integer,
        definition -> Text,
        created_by -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    confirmations (id) {
        id -> Text,
        contact_id -> Text,
        form_id -> Nullable<Text>,
        form_version -> Nullable<Integer>,
        purposes -> Text,
        created_at -> Timestamp,
        expires_at -> Timestamp,
        confirmed_at -> Nullable<Timestamp>,
        contact_values -> Nullable<Text>,
    }
}

diesel::table! {
    outbox (id) {
        id -> Text,
        kind -> Text,
        recipient -> Text,
        recipient_key -> Text,
        sender -> Text,
        message -> Text,
        created_at -> Timestamp,
        attempts -> Integer,
        next_attempt_at -> Timestamp,
        locked_until -> Nullable<Timestamp>,
        sent_at -> Nullable<Timestamp>,
        failed_at -> Nullable<Timestamp>,
        last_error -> Nullable<Text>,
    }
}

diesel::table! {
    plugins (name) {
        name -> Text,
        version -> Integer,
        description -> Text,
        source -> Text,
        updated_by -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    plugin_versions (name, version) {
        name -> Text,
        version -> Integer,
        description -> Text,
        source -> Text,
        created_by -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    segments (id) {
        id -> Text,
        name -> Text,
        description -> Text,
        script -> Nullable<Text>,
        plugin -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        settings -> Text,
    }
}

diesel::table! {
    campaigns (id) {
        id -> Text,
        name -> Text,
        subject -> Text,
        from_address -> Text,
        reply_to -> Nullable<Text>,
        html_body -> Nullable<Text>,
        text_body -> Text,
        lists -> Text,
        segment_id -> Nullable<Text>,
        kind -> Text,
        purpose -> Text,
        policy_plugin -> Nullable<Text>,
        track_opens -> Bool,
        track_clicks -> Bool,
        track_individual -> Bool,
        complaint_threshold -> Double,
        status -> Text,
        status_reason -> Nullable<Text>,
        scheduled_at -> Nullable<Timestamp>,
        started_at -> Nullable<Timestamp>,
        finished_at -> Nullable<Timestamp>,
        lease_until -> Nullable<Timestamp>,
        opens -> BigInt,
        clicks -> BigInt,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    campaign_recipients (id) {
        id -> Text,
        campaign_id -> Text,
        contact_id -> Nullable<Text>,
        email -> Text,
        list_id -> Nullable<Text>,
        status -> Text,
        reason -> Text,
        attempts -> Integer,
        next_attempt_at -> Timestamp,
        lease_until -> Nullable<Timestamp>,
        sent_at -> Nullable<Timestamp>,
        last_error -> Nullable<Text>,
        bounced_at -> Nullable<Timestamp>,
        complained_at -> Nullable<Timestamp>,
        unsubscribed_at -> Nullable<Timestamp>,
        opened_at -> Nullable<Timestamp>,
        clicked_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    delivery_events (id) {
        id -> Text,
        kind -> Text,
        email_hash -> Text,
        campaign_id -> Nullable<Text>,
        recipient_id -> Nullable<Text>,
        detail -> Text,
        occurred_at -> Timestamp,
    }
}

diesel::table! {
    provenance_manifests (id) {
        id -> Text,
        supplier -> Text,
        collected_on -> Text,
        consent_text -> Text,
        brand_named -> Bool,
        partners_shown -> Text,
        sha256 -> Text,
        created_by -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    import_jobs (id) {
        id -> Text,
        status -> Text,
        format -> Text,
        options -> Text,
        file_path -> Nullable<Text>,
        file_bytes -> BigInt,
        records_done -> BigInt,
        imported -> BigInt,
        updated -> BigInt,
        duplicates -> BigInt,
        suppressed -> BigInt,
        invalid -> BigInt,
        errors -> Text,
        failure -> Nullable<Text>,
        lease_until -> Nullable<Timestamp>,
        created_by -> Text,
        created_at -> Timestamp,
        started_at -> Nullable<Timestamp>,
        finished_at -> Nullable<Timestamp>,
        records_expected -> Nullable<BigInt>,
    }
}

diesel::table! {
    partners (id) {
        id -> Text,
        name -> Text,
        legal_name -> Text,
        description -> Text,
        privacy_policy_url -> Text,
        webhook_url -> Nullable<Text>,
        webhook_secret -> Nullable<Text>,
        inbound_policy -> Text,
        inbound_lists -> Text,
        share_plugin -> Nullable<Text>,
        status -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    partner_keys (id) {
        id -> Text,
        partner_id -> Text,
        prefix -> Text,
        secret_hash -> Text,
        created_at -> Timestamp,
        last_used_at -> Nullable<Timestamp>,
        revoked_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    partner_leads (id) {
        id -> Text,
        partner_id -> Text,
        contact_id -> Nullable<Text>,
        direction -> Text,
        partner_lead_id -> Nullable<Text>,
        status -> Text,
        payload -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        lease_until -> Nullable<Timestamp>,
    }
}

diesel::table! {
    webhook_subscriptions (id) {
        id -> Text,
        url -> Text,
        secret -> Text,
        event_types -> Text,
        description -> Text,
        active -> Bool,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    webhook_deliveries (id) {
        id -> Text,
        target -> Text,
        event_id -> Text,
        event_type -> Text,
        lead_id -> Nullable<Text>,
        payload -> Text,
        status -> Text,
        attempts -> Integer,
        next_attempt_at -> Timestamp,
        lease_until -> Nullable<Timestamp>,
        last_error -> Nullable<Text>,
        created_at -> Timestamp,
        delivered_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    delivery_attempts (id) {
        id -> Text,
        delivery_id -> Text,
        attempted_at -> Timestamp,
        duration_ms -> BigInt,
        status_code -> Nullable<Integer>,
        error -> Nullable<Text>,
    }
}

diesel::table! {
    surveys (id) {
        id -> Text,
        name -> Text,
        title -> Text,
        intro -> Text,
        questions -> Text,
        plugin -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    survey_responses (id) {
        id -> Text,
        survey_id -> Text,
        contact_id -> Text,
        answers -> Text,
        status -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        completed_at -> Nullable<Timestamp>,
        outcome -> Nullable<Text>,
        updates -> Nullable<Text>,
        error -> Nullable<Text>,
    }
}

diesel::table! {
    contact_link_revocations (contact_id) {
        contact_id -> Text,
        revoked_at -> Timestamp,
    }
}

diesel::table! {
    data_requests (id) {
        id -> Text,
        contact_id -> Text,
        action -> Text,
        created_at -> Timestamp,
        expires_at -> Timestamp,
        used_at -> Nullable<Timestamp>,
    }
}

diesel::joinable!(form_versions -> forms (form_id));
diesel::joinable!(campaign_recipients -> campaigns (campaign_id));
diesel::joinable!(confirmations -> contacts (contact_id));

diesel::allow_tables_to_appear_in_same_query!(
    consent_leaves,
    consent_tree_nodes,
    consent_unsequenced,
    consent_checkpoints,
    server_secrets,
    users,
    api_keys,
    lists,
    contacts,
    contact_tags,
    contact_lists,
    consent_events,
    consent_texts,
    suppressions,
    forms,
    form_versions,
    confirmations,
    outbox,
    plugins,
    plugin_versions,
    segments,
    campaigns,
    campaign_recipients,
    delivery_events,
    provenance_manifests,
    import_jobs,
    partners,
    partner_keys,
    partner_leads,
    webhook_subscriptions,
    webhook_deliveries,
    delivery_attempts,
    surveys,
    survey_responses,
    contact_link_revocations,
    data_requests,
);
