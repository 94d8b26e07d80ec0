//! The sandbox for templates admins write (campaign subjects and bodies, a form's
//! confirmation mail): fuel, recursion and output limits, a deadline, and rendering off
//! the request threads. A template is a program: nested `range()` loops would otherwise
//! render for seconds on an HTTP worker.

use std::io;
use std::time::{Duration, Instant};

use minijinja::{Environment, Error as TemplateError, Template};

use crate::error::{Error, Result};

/// Instructions one render may execute. A newsletter with a loop over a few hundred
/// items uses some tens of thousands.
pub const FUEL: u64 = 2_000_000;
/// Bytes one rendered part may hold (mail clients clip far smaller messages).
pub const MAX_OUTPUT: usize = 1024 * 1024;
/// Wall-clock time one render may take.
pub const DEADLINE: Duration = Duration::from_secs(2);
/// Macros calling macros, includes: deeper than this is a mistake.
const RECURSION_LIMIT: usize = 64;

/// An environment with the sandbox's limits, for templates admins write.
pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_fuel(Some(FUEL));
    env.set_recursion_limit(RECURSION_LIMIT);
    env
}

/// Renders within the output limit and the deadline (checked at every write, alongside
/// the fuel that bounds a loop that writes nothing); a fault is described with its line.
pub fn render(
    template: &Template<'_, '_>,
    context: &minijinja::Value,
    deadline: Instant,
) -> std::result::Result<String, String> {
    let mut out = Bounded { text: Vec::new(), deadline, overflow: None };
    match template.render_captured_to(context, &mut out) {
        Ok(_) => String::from_utf8(out.text).map_err(|_| "the output is not UTF-8".to_owned()),
        // The writer's refusal reaches us as a failed write: say what it was.
        Err(error) => Err(match (out.overflow, error.line()) {
            (Some(reason), Some(line)) => format!("line {line}: {reason}"),
            (Some(reason), None) => reason,
            (None, _) => describe(&error),
        }),
    }
}

/// Output that refuses to grow past [`MAX_OUTPUT`] or past the deadline.
struct Bounded {
    text: Vec<u8>,
    deadline: Instant,
    overflow: Option<String>,
}

impl io::Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let reason = if self.text.len() + buf.len() > MAX_OUTPUT {
            Some(format!("the output is larger than {} KiB", MAX_OUTPUT / 1024))
        } else if Instant::now() > self.deadline {
            Some(took_too_long())
        } else {
            None
        };
        if let Some(reason) = reason {
            self.overflow = Some(reason.clone());
            return Err(io::Error::other(reason));
        }
        self.text.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn took_too_long() -> String {
    format!("took longer than {} ms to render", DEADLINE.as_millis())
}

/// A template's error as people read it: `line 3: engine ran out of fuel`.
pub fn describe(error: &TemplateError) -> String {
    let detail = error.detail().map_or_else(|| error.kind().to_string(), str::to_owned);
    match error.line() {
        Some(line) => format!("line {line}: {detail}"),
        None => detail,
    }
}

/// Runs rendering work off the request threads, on a thread of its own at the lowest
/// priority, and answers within the deadline: a render still running then is answered as
/// the template's fault (`field`, 422) and left to end on its own, which its fuel ensures.
pub async fn off_the_request<T: Send + 'static>(
    field: &'static str,
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let task = tokio::task::spawn_blocking(move || {
        crate::threads::in_background(work).unwrap_or_else(|| Err(Error::internal("rendering panicked")))
    });
    // A little over the deadline: the render's own check usually answers first, with its line.
    match tokio::time::timeout(DEADLINE + Duration::from_millis(500), task).await {
        Ok(joined) => joined.map_err(Error::internal)?,
        Err(_) => Err(Error::field(field, took_too_long())),
    }
}

/// Checks a form's confirmation mail template: it must compile, render within the
/// sandbox's limits, and carry the link, or nobody could ever confirm.
pub fn check_confirmation_text(source: &str) -> std::result::Result<(), String> {
    let mut env = environment();
    env.add_template_owned("mail", source.to_owned()).map_err(|e| describe(&e))?;
    let template = env.get_template("mail").map_err(|e| describe(&e))?;
    let context = minijinja::context! { confirm_url => "CONFIRM-URL", lists => "L", form_title => "T" };
    let rendered = render(&template, &context, Instant::now() + DEADLINE)?;
    if !rendered.contains("CONFIRM-URL") {
        return Err("must contain {{ confirm_url }}, the link that confirms".to_owned());
    }
    Ok(())
}
