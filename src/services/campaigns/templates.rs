//! A campaign's subject and bodies: compiled once per send, rendered for each contact in
//! the template sandbox.

use serde::Serialize;

use crate::domain::ContactId;
use crate::error::FieldError;
use crate::mail::template;

/// A campaign's subject and bodies, compiled once per send, rendered in the template
/// sandbox (see [`crate::mail::template`]).
pub struct Templates {
    env: minijinja::Environment<'static>,
    html: bool,
}

/// One rendered message.
#[derive(Debug, Clone, Serialize)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
}

impl Templates {
    /// Compiles the three templates; errors name the field and the line.
    pub fn compile(subject: &str, text: &str, html: Option<&str>) -> std::result::Result<Self, Vec<FieldError>> {
        let mut env = template::environment();
        let mut errors = Vec::new();
        let sources = [
            ("subject.txt", "subject", Some(subject)),
            ("text.txt", "text_body", Some(text)),
            ("body.html", "html_body", html),
        ];
        for (name, field, source) in sources {
            if let Some(source) = source
                && let Err(error) = env.add_template_owned(name, source.to_owned())
            {
                errors.push(FieldError::new(field, template::describe(&error)));
            }
        }
        if errors.is_empty() { Ok(Self { env, html: html.is_some() }) } else { Err(errors) }
    }

    /// Renders the three parts, each within the sandbox's fuel and output limits, all
    /// within one deadline.
    pub fn render(&self, context: &minijinja::Value) -> std::result::Result<Rendered, String> {
        let deadline = std::time::Instant::now() + template::DEADLINE;
        let render = |name: &str| {
            self.env
                .get_template(name)
                .map_err(|e| template::describe(&e))
                .and_then(|t| template::render(&t, context, deadline))
                .map_err(|e| format!("{name}: {e}"))
        };
        Ok(Rendered {
            subject: render("subject.txt")?,
            text: render("text.txt")?,
            html: if self.html { Some(render("body.html")?) } else { None },
        })
    }
}

/// The contact as templates see it.
#[derive(Debug, Clone, Serialize)]
pub struct MailContact {
    pub id: ContactId,
    pub email: String,
    pub company: Option<String>,
    pub country: Option<String>,
    pub attributes: serde_json::Value,
}

/// What templates may use: `contact`, `campaign`, `unsubscribe_url`, `preferences_url`.
pub fn template_context(
    campaign_name: &str,
    contact: &MailContact,
    unsubscribe: &str,
    preferences: &str,
) -> minijinja::Value {
    minijinja::context! {
        contact => minijinja::Value::from_serialize(contact),
        campaign => minijinja::context! { name => campaign_name },
        // Our own signed URLs: safe as they are (HTML escaping would turn `/` into `&#x2f;`).
        unsubscribe_url => minijinja::Value::from_safe_string(unsubscribe.to_owned()),
        preferences_url => minijinja::Value::from_safe_string(preferences.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Whatever a template or a contact's attributes hold, compiling and rendering
        /// answer (an error names the field and line); nothing panics.
        #[test]
        fn any_template_and_contact_are_answered(source in ".{0,80}", value in ".{0,40}") {
            let text = format!("Hello {{{{ contact.attributes.name }}}} {source}");
            if let Ok(templates) = Templates::compile(&source, &text, Some(&source)) {
                let contact = MailContact {
                    id: ContactId::new(),
                    email: "a@example.org".to_owned(),
                    company: None,
                    country: None,
                    attributes: serde_json::json!({"name": value}),
                };
                let _ = templates.render(&template_context("C", &contact, "https://u", "https://p"));
            } else if let Err(errors) = Templates::compile(&source, &text, Some(&source)) {
                proptest::prop_assert!(errors.iter().all(|e| ["subject", "text_body", "html_body"].contains(&e.field.as_str())));
            }
        }
    }
}
