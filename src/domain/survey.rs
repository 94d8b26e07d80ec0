//! Post-signup surveys: their questions, and the checking of an answer against its
//! question.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::consent::string_enum;
use super::contact::{Tag, parse_short_text};
use crate::error::FieldError;

string_enum! {
    QuestionKind {
        SingleChoice = "single_choice",
        MultipleChoice = "multiple_choice",
        Text = "text",
        Number = "number",
        /// A whole number from `min` (default 1) to `max` (default 5).
        Rating = "rating",
        YesNo = "yes_no",
    }
}

impl Serialize for QuestionKind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for QuestionKind {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Question {
    /// What answers and scripts call it: a-z, 0-9 and `_`.
    pub id: String,
    pub text: String,
    pub kind: QuestionKind,
    pub required: bool,
    /// The choices of a single or multiple choice.
    pub options: Vec<String>,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

impl Question {
    /// The bounds of a rating.
    pub fn rating_range(&self) -> (i64, i64) {
        (self.min.map_or(1, |m| m as i64), self.max.map_or(5, |m| m as i64))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SurveyDefinition {
    pub name: String,
    pub title: String,
    pub intro: String,
    pub questions: Vec<Question>,
    /// The plugin whose `next_question` and `on_complete` hooks run the survey; none: the
    /// questions in order, and no profile update.
    pub plugin: Option<String>,
}

impl SurveyDefinition {
    /// Every fault of a definition, each named by its path.
    pub fn check(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if self.name.trim().is_empty() {
            errors.push(FieldError::new("name", "must not be empty"));
        }
        if self.title.trim().is_empty() {
            errors.push(FieldError::new("title", "must not be empty"));
        }
        if self.questions.is_empty() {
            errors.push(FieldError::new("questions", "must hold at least one question"));
        }
        let mut seen: Vec<&str> = Vec::new();
        for (i, question) in self.questions.iter().enumerate() {
            let valid_id = !question.id.is_empty()
                && question.id.len() <= 64
                && question.id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !valid_id {
                errors.push(FieldError::new(
                    format!("questions[{i}].id"),
                    "must be 1 to 64 characters of a-z, 0-9 and _",
                ));
            } else if seen.contains(&question.id.as_str()) {
                errors.push(FieldError::new(format!("questions[{i}].id"), "is used by another question"));
            }
            seen.push(&question.id);
            if question.text.trim().is_empty() {
                errors.push(FieldError::new(format!("questions[{i}].text"), "must not be empty"));
            }
            let choices = matches!(question.kind, QuestionKind::SingleChoice | QuestionKind::MultipleChoice);
            if choices && question.options.len() < 2 {
                errors.push(FieldError::new(format!("questions[{i}].options"), "must list at least two choices"));
            }
            if !choices && !question.options.is_empty() {
                errors.push(FieldError::new(format!("questions[{i}].options"), "only choices have options"));
            }
            if question.kind == QuestionKind::Rating {
                let (min, max) = question.rating_range();
                if min >= max || max - min > 10 {
                    errors.push(FieldError::new(format!("questions[{i}].max"), "a rating runs over 2 to 11 steps"));
                }
            }
        }
        errors
    }

    pub fn question(&self, id: &str) -> Option<&Question> {
        self.questions.iter().find(|q| q.id == id)
    }
}

/// Checks an answer given as text values (what a page posts: one value, or several for a
/// multiple choice). An empty answer is `Null`, refused when the question is required.
pub fn check_answer(question: &Question, values: &[String]) -> Result<Value, String> {
    let values: Vec<&str> = values.iter().map(|v| v.trim()).filter(|v| !v.is_empty()).collect();
    if values.is_empty() {
        return if question.required { Err("is required".into()) } else { Ok(Value::Null) };
    }
    if question.kind != QuestionKind::MultipleChoice && values.len() > 1 {
        return Err("must have one value".into());
    }
    let value = values[0];
    match question.kind {
        QuestionKind::SingleChoice if question.options.iter().any(|o| o == value) => Ok(Value::String(value.into())),
        QuestionKind::SingleChoice => Err(format!("must be one of {}", question.options.join(", "))),
        QuestionKind::MultipleChoice => {
            let mut chosen = Vec::new();
            for value in values {
                if !question.options.iter().any(|o| o == value) {
                    return Err(format!("{value:?} is not one of {}", question.options.join(", ")));
                }
                if !chosen.contains(&Value::String(value.into())) {
                    chosen.push(Value::String(value.into()));
                }
            }
            Ok(Value::Array(chosen))
        }
        QuestionKind::Text => parse_short_text(value, 2000).map(Value::String).map_err(|e| e.to_string()),
        QuestionKind::Number => {
            let number: f64 = value.parse().ok().filter(|n: &f64| n.is_finite()).ok_or("must be a number")?;
            if question.min.is_some_and(|min| number < min) || question.max.is_some_and(|max| number > max) {
                return Err(format!(
                    "must be between {} and {}",
                    question.min.map_or("any".into(), |m| m.to_string()),
                    question.max.map_or("any".into(), |m| m.to_string())
                ));
            }
            Ok(serde_json::Number::from_f64(number).map_or(Value::Null, Value::Number))
        }
        QuestionKind::Rating => {
            let (min, max) = question.rating_range();
            match value.parse::<i64>() {
                Ok(rating) if (min..=max).contains(&rating) => Ok(Value::from(rating)),
                _ => Err(format!("must be a whole number from {min} to {max}")),
            }
        }
        QuestionKind::YesNo => match value {
            "yes" | "true" | "on" | "1" => Ok(Value::Bool(true)),
            "no" | "false" | "off" | "0" => Ok(Value::Bool(false)),
            _ => Err("must be yes or no".into()),
        },
    }
}

/// An answer as JSON (what a site's own script sends) turned into the text values
/// [`check_answer`] reads.
pub fn answer_values(value: &Value) -> Vec<String> {
    match value {
        Value::Null => Vec::new(),
        Value::Bool(true) => vec!["yes".into()],
        Value::Bool(false) => vec!["no".into()],
        Value::String(text) => vec![text.clone()],
        Value::Array(items) => items.iter().map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned)).collect(),
        other => vec![other.to_string()],
    }
}

/// The profile changes a survey's `on_complete` hook asked for, checked: attributes (named
/// 1 to 64 characters of a-z, 0-9 and _, no nested maps) and tags.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ProfileUpdates {
    pub attributes: serde_json::Map<String, Value>,
    pub tags: Vec<Tag>,
}

impl ProfileUpdates {
    /// Reads what `plugin`'s `on_complete` answered (`None`: a value with no JSON form;
    /// null: nothing to change). `Err` says every fault, naming the script.
    pub fn from_answer(plugin: &str, answer: Option<Value>) -> Result<Self, String> {
        let map = match answer {
            Some(Value::Null) => return Ok(Self::default()),
            Some(Value::Object(map)) => map,
            _ => return Err(format!("script {plugin}: on_complete must answer #{{attributes: #{{}}, tags: []}}")),
        };
        let mut updates = Self::default();
        let mut faults = Vec::new();
        match map.get("attributes") {
            None | Some(Value::Null) => {}
            Some(Value::Object(attributes)) => {
                for (name, value) in attributes {
                    let valid = !name.is_empty()
                        && name.len() <= 64
                        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
                    if !valid {
                        faults.push(format!("attribute {name:?}: names are 1 to 64 characters of a-z, 0-9 and _"));
                    } else if value.is_object() {
                        faults.push(format!("attribute {name}: must be a string, number, boolean, array or null"));
                    } else {
                        updates.attributes.insert(name.clone(), value.clone());
                    }
                }
            }
            Some(_) => faults.push("attributes must be a map".to_owned()),
        }
        match map.get("tags") {
            None | Some(Value::Null) => {}
            Some(Value::Array(tags)) => {
                for tag in tags {
                    match tag.as_str().map(Tag::parse) {
                        Some(Ok(tag)) => updates.tags.push(tag),
                        Some(Err(e)) => faults.push(format!("tag {tag}: {e}")),
                        None => faults.push(format!("tag {tag}: must be a string")),
                    }
                }
            }
            Some(_) => faults.push("tags must be an array".to_owned()),
        }
        if faults.is_empty() {
            Ok(updates)
        } else {
            Err(format!("script {plugin}: on_complete: {}", faults.join("; ")))
        }
    }

    pub fn as_json(&self) -> Value {
        serde_json::json!({
            "attributes": self.attributes,
            "tags": self.tags.iter().map(|t| t.as_str().to_owned()).collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn profile_updates_keep_what_is_valid_and_name_every_fault() {
        let ok = ProfileUpdates::from_answer(
            "p",
            Some(serde_json::json!({"attributes": {"size": "m", "score": 3}, "tags": ["survey-done"]})),
        )
        .expect("valid");
        assert_eq!(ok.as_json(), serde_json::json!({"attributes": {"size": "m", "score": 3}, "tags": ["survey-done"]}));
        assert_eq!(ProfileUpdates::from_answer("p", Some(Value::Null)), Ok(ProfileUpdates::default()));
        let fault = ProfileUpdates::from_answer(
            "p",
            Some(serde_json::json!({"attributes": {"Bad Name": 1, "nested": {"a": 1}}, "tags": [3]})),
        )
        .expect_err("invalid");
        assert!(fault.starts_with("script p: on_complete: "), "{fault}");
        assert!(
            fault.contains("attribute \"Bad Name\"") && fault.contains("attribute nested") && fault.contains("tag 3"),
            "{fault}"
        );
        assert_eq!(
            ProfileUpdates::from_answer("p", Some(serde_json::json!(7))),
            Err("script p: on_complete must answer #{attributes: #{}, tags: []}".to_owned())
        );
        assert!(ProfileUpdates::from_answer("p", None).is_err());
    }

    use super::*;

    fn question(kind: QuestionKind, options: &[&str]) -> Question {
        Question {
            id: "q".into(),
            text: "Q?".into(),
            kind,
            required: true,
            options: options.iter().map(|o| (*o).to_owned()).collect(),
            min: None,
            max: None,
        }
    }

    fn values(items: &[&str]) -> Vec<String> {
        items.iter().map(|v| (*v).to_owned()).collect()
    }

    #[test]
    fn answers_are_checked_against_their_question() {
        let choice = question(QuestionKind::SingleChoice, &["cats", "dogs"]);
        assert_eq!(check_answer(&choice, &values(&["dogs"])), Ok(Value::from("dogs")));
        assert_eq!(check_answer(&choice, &values(&["fish"])), Err("must be one of cats, dogs".into()));
        assert_eq!(check_answer(&choice, &values(&[" "])), Err("is required".into()));
        let many = question(QuestionKind::MultipleChoice, &["a", "b", "c"]);
        assert_eq!(check_answer(&many, &values(&["a", "c", "a"])), Ok(serde_json::json!(["a", "c"])));
        let rating = question(QuestionKind::Rating, &[]);
        assert_eq!(check_answer(&rating, &values(&["5"])), Ok(Value::from(5)));
        assert_eq!(check_answer(&rating, &values(&["6"])), Err("must be a whole number from 1 to 5".into()));
        let yes_no = question(QuestionKind::YesNo, &[]);
        assert_eq!(check_answer(&yes_no, &answer_values(&Value::Bool(false))), Ok(Value::Bool(false)));
        let number = Question { min: Some(0.0), ..question(QuestionKind::Number, &[]) };
        assert_eq!(check_answer(&number, &values(&["-1"])), Err("must be between 0 and any".into()));
        assert_eq!(check_answer(&number, &values(&["NaN"])), Err("must be a number".into()));
    }
}
