//! The typed face of the plugin host, which is all that services see: a [`Script`] is a
//! compiled script with its settings; its hooks take serde values (or a contact) and answer
//! an [`Answer`], read through typed accessors. Rhai's own types stay inside `plugins/`.

use std::sync::Arc;

use rhai::{AST, Dynamic};
use serde::Serialize;
use serde_json::Value;

use super::{CallStats, PluginHost, ScriptContact, ScriptError};

/// A function a script defines: its name and its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Function {
    pub name: String,
    pub params: Vec<String>,
}

impl std::fmt::Display for Function {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}({})", self.name, self.params.join(", "))
    }
}

/// A compiled script, with the settings its hooks see as the constant `settings`; cheap to
/// clone.
#[derive(Clone)]
pub struct Script {
    name: String,
    ast: Arc<AST>,
    settings: Dynamic,
}

impl std::fmt::Debug for Script {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Script").field("name", &self.name).finish_non_exhaustive()
    }
}

impl Script {
    pub(super) fn new(name: &str, ast: Arc<AST>) -> Self {
        Self { name: name.to_owned(), ast, settings: Dynamic::UNIT }
    }

    /// The name that errors give for it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The same script with these settings (a map, usually a plugin's `[settings]`).
    pub fn with_settings(mut self, settings: &impl Serialize) -> Result<Self, ScriptError> {
        self.settings = rhai::serde::to_dynamic(settings)
            .map_err(|e| self.wrong_answer(format!("its settings cannot be handed to it: {e}")))?;
        Ok(self)
    }

    /// Whether it defines `hook` with `arity` parameters (a hook with another number of
    /// parameters is never called).
    pub fn defines(&self, hook: &str, arity: usize) -> bool {
        super::defines(&self.ast, hook, arity)
    }

    /// The functions it defines, in the order written.
    pub fn functions(&self) -> Vec<Function> {
        self.ast
            .iter_functions()
            .map(|f| Function { name: f.name.to_owned(), params: f.params.iter().map(|p| p.to_string()).collect() })
            .collect()
    }

    /// Calls `hook(args…)` with JSON values; `Ok(None)` when it defines no such hook.
    pub fn call(
        &self,
        host: &PluginHost,
        hook: &str,
        args: &[Value],
    ) -> Result<Option<(Answer, CallStats)>, ScriptError> {
        // Nothing is converted for a hook the script does not define.
        if !self.defines(hook, args.len()) {
            return Ok(None);
        }
        let args = Arguments::new(args)
            .map_err(|e| self.wrong_answer(format!("its arguments cannot be handed to it: {e}")))?;
        self.call_with(host, hook, args.0)
    }

    /// Calls `hook(contact, rest…)`, with arguments prepared once for many contacts.
    pub fn call_with_contact(
        &self,
        host: &PluginHost,
        hook: &str,
        contact: &ScriptContact,
        rest: &Arguments,
    ) -> Result<Option<(Answer, CallStats)>, ScriptError> {
        let mut args = Vec::with_capacity(1 + rest.0.len());
        args.push(Dynamic::from(contact.clone()));
        args.extend(rest.0.iter().cloned());
        self.call_with(host, hook, args)
    }

    /// Evaluates the whole script as an expression with `contact` in scope (a segment
    /// written as a condition rather than as a hook).
    pub fn eval_with_contact(&self, host: &PluginHost, contact: &ScriptContact) -> Result<Answer, ScriptError> {
        host.eval_with_contact(&self.name, &self.ast, contact.clone()).map(|(value, _)| Answer(value))
    }

    fn call_with(
        &self,
        host: &PluginHost,
        hook: &str,
        args: Vec<Dynamic>,
    ) -> Result<Option<(Answer, CallStats)>, ScriptError> {
        let arity = args.len();
        let constants = [("settings", self.settings.clone())];
        let outcome = host.call_hook(&self.name, &self.ast, hook, args, arity, &constants)?;
        Ok(outcome.map(|(value, stats)| (Answer(value), stats)))
    }

    /// The error for what a hook was handed or answered that is not what it takes or must
    /// answer: `message` says what was wanted and what came.
    pub fn wrong_answer(&self, message: impl Into<String>) -> ScriptError {
        ScriptError::new(&self.name, message)
    }
}

/// Arguments converted once for the script, to be handed to many calls.
#[derive(Debug, Clone, Default)]
pub struct Arguments(Vec<Dynamic>);

impl Arguments {
    pub fn new(values: &[impl Serialize]) -> Result<Self, String> {
        values
            .iter()
            .map(|value| rhai::serde::to_dynamic(value).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

/// What a hook answered.
#[derive(Debug, Clone)]
pub struct Answer(Dynamic);

impl Answer {
    /// `()`: the script answered nothing (withheld, no question, no change).
    pub fn is_nothing(&self) -> bool {
        self.0.is_unit()
    }

    pub fn as_bool(&self) -> Option<bool> {
        self.0.as_bool().ok()
    }

    /// A string answer.
    pub fn as_text(&self) -> Option<String> {
        self.0.clone().into_string().ok()
    }

    /// A field of a map answer.
    pub fn get(&self, key: &str) -> Option<Answer> {
        self.0.read_lock::<rhai::Map>().and_then(|map| map.get(key).cloned()).map(Answer)
    }

    pub fn is_map(&self) -> bool {
        self.0.is_map()
    }

    /// The answer's type, as a script author knows it (`bool`, `string`, `map`, …).
    pub fn kind(&self) -> &'static str {
        self.0.type_name()
    }

    /// The answer as JSON, when it has a JSON form (`()` is null).
    pub fn to_json(&self) -> Option<Value> {
        rhai::serde::from_dynamic::<Value>(&self.0).ok()
    }

    /// The answer as JSON, or as the text Rhai prints for it when it has no JSON form (a
    /// function pointer, say): what a dry run shows.
    pub fn to_json_or_text(&self) -> Value {
        self.to_json().unwrap_or_else(|| Value::String(self.0.to_string()))
    }
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::json;

    use super::*;
    use crate::plugins::Limits;

    fn host() -> PluginHost {
        PluginHost::new(Path::new("/nonexistent"), Limits::default())
    }

    #[test]
    fn a_hook_takes_json_and_its_answer_reads_back_as_json_with_its_settings_in_scope() {
        let host = host();
        let script = host
            .compile("share", "fn share(lead, partner) { #{email: lead.email, to: partner.name, tag: settings.tag} }")
            .and_then(|s| s.with_settings(&json!({"tag": "b2b"})))
            .expect("compiles");
        let (answer, _) = script
            .call(&host, "share", &[json!({"email": "a@example.org"}), json!({"name": "Acme"})])
            .expect("runs")
            .expect("defined");
        assert_eq!(answer.to_json(), Some(json!({"email": "a@example.org", "to": "Acme", "tag": "b2b"})));
        assert_eq!(answer.get("to").and_then(|a| a.as_text()).as_deref(), Some("Acme"));
        assert_eq!(answer.kind(), "map");
    }

    #[test]
    fn a_hook_the_script_does_not_define_with_that_arity_is_not_called() {
        let host = host();
        let script = host.compile("p", "fn share(lead) { throw \"called\" }").expect("compiles");
        assert!(!script.defines("share", 2));
        assert!(script.call(&host, "share", &[json!({}), json!({})]).expect("not an error").is_none());
        assert_eq!(script.functions().iter().map(ToString::to_string).collect::<Vec<_>>(), vec!["share(lead)"]);
    }

    #[test]
    fn nothing_and_a_wrong_answer_are_told_apart() {
        let host = host();
        let script = host.compile("p", "fn next_question(a, s) { () }\nfn on_complete(c, a) { 3 }").expect("compiles");
        let (nothing, _) =
            script.call(&host, "next_question", &[json!({}), json!({})]).expect("runs").expect("defined");
        assert!(nothing.is_nothing());
        let (number, _) = script.call(&host, "on_complete", &[json!({}), json!({})]).expect("runs").expect("defined");
        assert!(!number.is_nothing());
        assert_eq!(number.as_bool(), None);
        assert_eq!(number.kind(), "i64");
        let error = script.wrong_answer(format!("on_complete must answer a map, not {}", number.kind()));
        assert_eq!(error.describe(), "script p: on_complete must answer a map, not i64");
    }
}
