//! The Rhai plugin host: one engine with strict limits, scripts compiled once and cached,
//! hooks called only where a script defines them. Scripts never touch the database or the
//! file system: services hand them data and read what comes back.

pub mod contact;
pub mod hooks;
pub mod pushdown;

use std::cell::Cell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use rhai::module_resolvers::FileModuleResolver;
use rhai::{AST, Dynamic, Engine, EvalAltResult, FuncArgs, ModuleResolver, Position, Scope};

pub use contact::ScriptContact;
pub use hooks::{Answer, Arguments, Function, Script};

/// Safety limits for admin scripts.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_operations: u64,
    pub max_call_levels: usize,
    pub max_expr_depth: usize,
    pub max_string_size: usize,
    pub max_array_size: usize,
    pub max_map_size: usize,
    /// Wall-clock time one call may take.
    pub deadline: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_operations: 5_000_000,
            max_call_levels: 32,
            max_expr_depth: 64,
            max_string_size: 64 * 1024,
            max_array_size: 10_000,
            max_map_size: 10_000,
            deadline: Duration::from_secs(2),
        }
    }
}

/// A script failed: to compile, or while running. Names the script, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct ScriptError {
    pub script: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
    /// What the script threw (`throw "reason"`): a refusal it means, not a fault.
    pub thrown: Option<String>,
}

impl ScriptError {
    /// A fault of a script at no particular place (what it answered, say).
    pub fn new(script: &str, message: impl Into<String>) -> Self {
        Self { script: script.to_owned(), line: None, column: None, message: message.into(), thrown: None }
    }

    fn at(script: &str, position: Position, message: String) -> Self {
        Self { script: script.to_owned(), line: position.line(), column: position.position(), message, thrown: None }
    }

    pub fn describe(&self) -> String {
        match (self.line, self.column) {
            (Some(line), Some(column)) => {
                format!("script {}, line {line}, column {column}: {}", self.script, self.message)
            }
            (Some(line), None) => format!("script {}, line {line}: {}", self.script, self.message),
            _ => format!("script {}: {}", self.script, self.message),
        }
    }
}

/// What one call cost.
#[derive(Debug, Clone, Copy, Default)]
pub struct CallStats {
    pub operations: u64,
    pub elapsed: Duration,
}

thread_local! {
    /// The deadline of the call running on this thread (calls never span threads).
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
    /// Operations counted by the call running on this thread.
    static OPERATIONS: Cell<u64> = const { Cell::new(0) };
    /// The last statement a replayed call reached (see [`PluginHost::replay`]).
    static REACHED: Cell<Position> = const { Cell::new(Position::NONE) };
}

/// How long the replay of a failed call may take to find where it stopped.
const REPLAY_DEADLINE: Duration = Duration::from_millis(500);

/// The functions of Rhai's standard library that block the thread: a blocked thread counts
/// no operations, so neither the operation limit nor the deadline would ever stop it.
const BLOCKING: &[&str] = &["sleep"];

/// The engine and the compiled scripts, shared by every request.
pub struct PluginHost {
    engine: Engine,
    /// The same engine, tracing each statement it reaches: only to replay a call that met a
    /// limit inside a function, whose position Rhai replaces by the (absent) call site's.
    tracer: Engine,
    limits: Limits,
    /// Compiled scripts by the hash of their source: a changed script compiles anew,
    /// an unchanged one never twice.
    cache: RwLock<HashMap<String, Arc<AST>>>,
}

fn build_engine(plugins_dir: &Path, limits: Limits) -> Engine {
    let mut engine = Engine::new();
    engine
        .set_max_operations(limits.max_operations)
        .set_max_call_levels(limits.max_call_levels)
        .set_max_expr_depths(limits.max_expr_depth, limits.max_expr_depth / 2)
        .set_max_string_size(limits.max_string_size)
        .set_max_array_size(limits.max_array_size)
        .set_max_map_size(limits.max_map_size)
        .set_max_modules(16)
        .set_max_variables(256)
        .set_max_functions(256)
        .disable_symbol("eval")
        .set_module_resolver(PluginsFolder::new(plugins_dir))
        .on_print(|text| tracing::info!(target: "consento::plugins", "{text}"))
        .on_debug(|text, source, position| {
            tracing::debug!(target: "consento::plugins", source = source.unwrap_or(""), %position, "{text}")
        })
        .on_progress(|operations| {
            OPERATIONS.with(|o| o.set(operations));
            let late = operations % 256 == 0
                && DEADLINE.with(|d| d.get()).is_some_and(|deadline| Instant::now() > deadline);
            late.then(|| Dynamic::from("deadline"))
        });
    // The engine's own functions are found before the standard library's: these shadow
    // `sleep(seconds)` (integer and float) so that no script can wait.
    for name in BLOCKING {
        engine.register_fn(*name, |_: rhai::INT| -> Result<(), Box<EvalAltResult>> { Err(blocking(name)) });
        engine.register_fn(*name, |_: rhai::FLOAT| -> Result<(), Box<EvalAltResult>> { Err(blocking(name)) });
    }
    contact::register(&mut engine);
    engine
}

/// The error a blocking function answers: not `ErrorRuntime`, which is what a script
/// throws (a refusal it means), and not a limit, whose position Rhai drops.
fn blocking(name: &str) -> Box<EvalAltResult> {
    EvalAltResult::ErrorFunctionNotFound(format!("{name}()"), Position::NONE).into()
}

impl PluginHost {
    pub fn new(plugins_dir: &Path, limits: Limits) -> Self {
        let engine = build_engine(plugins_dir, limits);
        let mut tracer = build_engine(plugins_dir, limits);
        // Rhai marks the debugger interface volatile (it may change), not deprecated.
        #[allow(deprecated)]
        tracer.register_debugger(
            |_, debugger| debugger,
            |_, event, node, _, position| {
                // Steps only: the events of a function's exit carry the position of its end.
                if matches!(event, rhai::debugger::DebuggerEvent::Step) && node.is_stmt() && !position.is_none() {
                    REACHED.with(|r| r.set(position));
                }
                Ok(rhai::debugger::DebuggerCommand::StepInto)
            },
        );
        Self { engine, tracer, limits, cache: RwLock::new(HashMap::new()) }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Compiles a script (with no settings), or answers the one compiled before from the
    /// same source.
    pub fn compile(&self, name: &str, source: &str) -> Result<Script, ScriptError> {
        let key = crate::domain::consent::sha256_hex(source.as_bytes());
        if let Some(ast) = self.cache.read().ok().and_then(|cache| cache.get(&key).cloned()) {
            return Ok(Script::new(name, ast));
        }
        let mut ast = self
            .engine
            .compile(source)
            .map_err(|error| ScriptError::at(name, error.position(), error.0.to_string()))?;
        ast.set_source(name);
        let ast = Arc::new(ast);
        if let Ok(mut cache) = self.cache.write() {
            if cache.len() > 1000 {
                cache.clear();
            }
            cache.insert(key, ast.clone());
        }
        Ok(Script::new(name, ast))
    }

    /// Calls a hook; `Ok(None)` when the script does not define it.
    fn call_hook(
        &self,
        name: &str,
        ast: &AST,
        hook: &str,
        args: impl FuncArgs + Clone,
        arity: usize,
        constants: &[(&str, Dynamic)],
    ) -> Result<Option<(Dynamic, CallStats)>, ScriptError> {
        if !defines(ast, hook, arity) {
            return Ok(None);
        }
        self.guarded(name, |engine| {
            let mut scope = Scope::new();
            for (key, value) in constants {
                scope.push_constant_dynamic(*key, value.clone());
            }
            engine.call_fn::<Dynamic>(&mut scope, ast, hook, args.clone())
        })
        .map(Some)
    }

    /// Evaluates a script as an expression with `contact` in scope.
    fn eval_with_contact(
        &self,
        name: &str,
        ast: &AST,
        contact: ScriptContact,
    ) -> Result<(Dynamic, CallStats), ScriptError> {
        self.guarded(name, |engine| {
            let mut scope = Scope::new();
            scope.push_constant("contact", contact.clone());
            engine.eval_ast_with_scope::<Dynamic>(&mut scope, ast)
        })
    }

    /// Runs a call under the wall-clock deadline, turning any failure into a
    /// [`ScriptError`] that names the script and the place.
    fn guarded(
        &self,
        name: &str,
        call: impl Fn(&Engine) -> Result<Dynamic, Box<EvalAltResult>>,
    ) -> Result<(Dynamic, CallStats), ScriptError> {
        let started = Instant::now();
        DEADLINE.with(|d| d.set(Some(started + self.limits.deadline)));
        OPERATIONS.with(|o| o.set(0));
        let outcome = call(&self.engine);
        DEADLINE.with(|d| d.set(None));
        let stats = CallStats { operations: OPERATIONS.with(Cell::get), elapsed: started.elapsed() };
        outcome.map(|value| (value, stats)).map_err(|error| {
            // The innermost error is where the script was (Rhai wraps errors raised inside
            // functions); its message is told without the position, which we name ourselves.
            let outer = error.position();
            let mut inner = innermost(*error);
            let mut position = inner.take_position();
            if position.is_none() {
                position = outer;
            }
            if position.is_none() && is_limit(&inner) {
                position = self.replay(&call);
            }
            let thrown = match &inner {
                EvalAltResult::ErrorRuntime(value, _) => Some(value.to_string()),
                _ => None,
            };
            let message = match &inner {
                EvalAltResult::ErrorTerminated(..) => {
                    format!("stopped: took longer than {} ms", self.limits.deadline.as_millis())
                }
                EvalAltResult::ErrorTooManyOperations(..) => {
                    format!("stopped: more than {} operations", self.limits.max_operations)
                }
                EvalAltResult::ErrorFunctionNotFound(function, _)
                    if BLOCKING.iter().any(|name| function.starts_with(&format!("{name}("))) =>
                {
                    format!("{function} is not available: a script may not wait or block the server")
                }
                other => other.to_string(),
            };
            ScriptError { thrown, ..ScriptError::at(name, position, message) }
        })
    }

    /// Runs a failed call again on the tracing engine, briefly, and answers the last
    /// statement it reached. Scripts change nothing outside themselves, so a second run is
    /// harmless; a limit met inside a hook then names a line and column, not just the hook.
    fn replay(&self, call: &impl Fn(&Engine) -> Result<Dynamic, Box<EvalAltResult>>) -> Position {
        REACHED.with(|r| r.set(Position::NONE));
        DEADLINE.with(|d| d.set(Some(Instant::now() + REPLAY_DEADLINE.min(self.limits.deadline))));
        let _ = call(&self.tracer);
        DEADLINE.with(|d| d.set(None));
        REACHED.with(Cell::get)
    }
}

/// Whether a script defines `hook` with `arity` parameters (a hook defined with another
/// number is never called).
fn defines(ast: &AST, hook: &str, arity: usize) -> bool {
    ast.iter_functions().any(|f| f.name == hook && f.params.len() == arity)
}

/// The error a script met, out of the calls of functions Rhai wraps it in.
fn innermost(error: EvalAltResult) -> EvalAltResult {
    match error {
        EvalAltResult::ErrorInFunctionCall(_, _, inner, _) | EvalAltResult::ErrorInModule(_, inner, _) => {
            innermost(*inner)
        }
        other => other,
    }
}

/// Whether an error is one of the sandbox's limits (operations, time, sizes, depth), which
/// Rhai reports at the call site of the function that met it.
fn is_limit(error: &EvalAltResult) -> bool {
    matches!(
        error,
        EvalAltResult::ErrorTooManyOperations(..)
            | EvalAltResult::ErrorTerminated(..)
            | EvalAltResult::ErrorDataTooLarge(..)
            | EvalAltResult::ErrorStackOverflow(..)
            | EvalAltResult::ErrorTooManyVariables(..)
            | EvalAltResult::ErrorTooManyModules(..)
    )
}

/// Imports resolve only to `.rhai` files inside the plugins folder: no absolute paths,
/// no `..`, nothing else on the machine.
struct PluginsFolder {
    root: PathBuf,
    files: FileModuleResolver,
}

impl PluginsFolder {
    fn new(root: &Path) -> Self {
        Self { root: root.to_owned(), files: FileModuleResolver::new_with_path(root) }
    }

    fn refuse(path: &str, position: Position) -> Box<EvalAltResult> {
        // Not ErrorModuleNotFound: Rhai rewrites that one to the bare path.
        EvalAltResult::ErrorRuntime(
            format!("cannot import {path}: imports are limited to scripts inside the plugins folder").into(),
            position,
        )
        .into()
    }
}

impl ModuleResolver for PluginsFolder {
    fn resolve(
        &self,
        engine: &Engine,
        source: Option<&str>,
        path: &str,
        position: Position,
    ) -> Result<rhai::Shared<rhai::Module>, Box<EvalAltResult>> {
        let relative = Path::new(path);
        let escapes = relative.is_absolute()
            || relative.components().any(|c| !matches!(c, std::path::Component::Normal(_)))
            || path.contains('\\');
        if escapes || !self.root.is_dir() {
            return Err(Self::refuse(path, position));
        }
        // The scripts' own `source` names them, not a file: resolve from the root.
        let _ = source;
        self.files.resolve(engine, None, path, position)
    }
}
