//! `Interpreter`: one rhai engine, one persistent scope and the functions defined so far.

use std::{
    cell::RefCell,
    collections::HashMap,
    panic::{catch_unwind, AssertUnwindSafe},
    rc::Rc,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

use rhai::{Array, Dynamic, Engine, ImmutableString, Scope, AST};

use crate::{
    array::ArrayValue,
    builtins,
    collectives::{self, OP_CONSTANTS},
    comm::Collectives,
    error::{from_eval, from_parse, CellError},
    registry::Registry,
};

/// Default deepest nesting of cell-function calls. A call level takes about 45 KiB of native
/// stack in a debug build (measured: 40 levels fit a 2 MiB thread, 47 do not), far less in
/// release; rhai's own defaults are 8 (debug) and 64 (release). Raise it with
/// [`Interpreter::set_max_call_levels`] when cells run on a thread with a larger stack.
pub const MAX_CALL_LEVELS: usize = if cfg!(debug_assertions) { 32 } else { 64 };

/// What running a cell (or a call) produced.
#[derive(Debug, Clone, Default)]
pub struct CellOutcome {
    /// Everything `print`/`debug` wrote, one line per call.
    pub stdout: String,
    /// Display of the cell's final value (like `Out[n]`), `None` when it is unit.
    pub value: Option<String>,
    /// The error that stopped the cell, if any.
    pub error: Option<CellError>,
}

impl CellOutcome {
    /// True when the cell ran without error.
    pub fn is_ok(&self) -> bool {
        self.error.is_none()
    }
}

/// Runs cells for one engine: a rhai `Engine` built once, a persistent `Scope`, and a library
/// AST holding every function defined by a successful cell.
pub struct Interpreter {
    engine: Engine,
    scope: Scope<'static>,
    lib: AST,
    out: Rc<RefCell<String>>,
    interrupt: Arc<AtomicBool>,
    constants: Rc<Vec<(&'static str, Dynamic)>>,
    count: u64,
}

impl std::fmt::Debug for Interpreter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interpreter")
            .field("variables", &self.scope.len())
            .field("execution_count", &self.count)
            .finish()
    }
}

/// Formats a value for `Out[n]`: arrays numpy-style, strings quoted, lists recursively.
pub fn display_value(v: &Dynamic) -> String {
    if v.is_unit() {
        "()".into()
    } else if let Some(a) = v.read_lock::<ArrayValue>() {
        a.to_string()
    } else if let Some(s) = v.read_lock::<ImmutableString>() {
        format!("{:?}", s.as_str())
    } else if let Some(list) = v.read_lock::<Array>() {
        let items: Vec<String> = list.iter().map(display_value).collect();
        format!("[{}]", items.join(", "))
    } else {
        v.to_string()
    }
}

impl Interpreter {
    /// An interpreter for one engine. `comm`: this engine's communicator; `interrupt`: set by
    /// another thread to stop the running cell; `registry`: native functions to expose.
    pub fn new(comm: Box<dyn Collectives>, registry: Registry, interrupt: Arc<AtomicBool>) -> Self {
        let comm: Rc<dyn Collectives> = Rc::from(comm);
        let constants: Vec<(&'static str, Dynamic)> = [
            ("rank", Dynamic::from_int(comm.rank() as i64)),
            ("size", Dynamic::from_int(comm.size() as i64)),
        ]
        .into_iter()
        .chain(OP_CONSTANTS.iter().map(|&(k, v)| (k, Dynamic::from(v.to_string()))))
        .collect();
        let constants = Rc::new(constants);

        let mut engine = Engine::new();
        engine.set_max_call_levels(MAX_CALL_LEVELS);
        let out = Rc::new(RefCell::new(String::new()));
        let o = Rc::clone(&out);
        engine.on_print(move |s| {
            let mut o = o.borrow_mut();
            o.push_str(s);
            o.push('\n');
        });
        let o = Rc::clone(&out);
        engine.on_debug(move |s, _, _| {
            let mut o = o.borrow_mut();
            o.push_str(s);
            o.push('\n');
        });
        let flag = Arc::clone(&interrupt);
        engine.on_progress(move |_| {
            flag.load(Ordering::Relaxed).then(|| Dynamic::from("KeyboardInterrupt".to_string()))
        });
        // Functions cannot see the global scope in rhai: serve the built-in constants (`rank`,
        // `SUM`, ...) to them here, unless a local variable of that name exists.
        let c = Rc::clone(&constants);
        #[allow(deprecated)] // on_var is marked volatile, not deprecated
        engine.on_var(move |name, index, ctx| {
            if index > 0 || ctx.scope().contains(name) {
                return Ok(None);
            }
            Ok(c.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone()))
        });
        builtins::register(&mut engine);
        collectives::register(&mut engine, comm);
        registry.apply(&mut engine);

        let mut interp = Interpreter {
            engine,
            scope: Scope::new(),
            lib: AST::empty(),
            out,
            interrupt,
            constants,
            count: 0,
        };
        interp.restore_constants();
        interp
    }

    /// Runs one cell in the persistent scope. Never panics on bad user code.
    pub fn execute(&mut self, code: &str) -> CellOutcome {
        self.count += 1;
        let outcome = self.guarded(|this| {
            let ast = this.engine.compile_with_scope(&this.scope, code).map_err(|e| from_parse(&e))?;
            let combined = this.lib.merge(&ast);
            let v = this
                .engine
                .eval_ast_with_scope::<Dynamic>(&mut this.scope, &combined)
                .map_err(|e| from_eval(*e))?;
            this.lib.combine(ast.clone_functions_only());
            Ok(v)
        });
        self.compact_scope();
        outcome
    }

    /// Calls a registered or cell-defined function by name with the given arguments.
    pub fn call(&mut self, name: &str, args: Vec<Dynamic>) -> CellOutcome {
        let valid = name.chars().next().is_some_and(|c| c.is_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_alphanumeric() || c == '_');
        if !valid {
            return CellOutcome {
                error: Some(CellError::new("NameError", format!("'{name}' is not a function name"))),
                ..CellOutcome::default()
            };
        }
        let mark = self.scope.len();
        let mut params = Vec::with_capacity(args.len());
        for (i, a) in args.into_iter().enumerate() {
            let p = format!("__mpx_arg{i}");
            self.scope.push_dynamic(p.clone(), a);
            params.push(p);
        }
        let code = format!("{name}({})", params.join(", "));
        let outcome = self.guarded(|this| {
            let ast = this.engine.compile(&code).map_err(|e| from_parse(&e))?;
            this.engine
                .eval_ast_with_scope::<Dynamic>(&mut this.scope, &this.lib.merge(&ast))
                .map_err(|e| from_eval(*e))
        });
        self.scope.rewind(mark);
        outcome
    }

    /// Runs `f` with output capture, interrupt reset and a panic guard; builds the outcome.
    fn guarded(&mut self, f: impl FnOnce(&mut Self) -> Result<Dynamic, CellError>) -> CellOutcome {
        self.interrupt.store(false, Ordering::SeqCst);
        self.out.borrow_mut().clear();
        let result = catch_unwind(AssertUnwindSafe(|| f(self))).unwrap_or_else(|p| {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".into());
            Err(CellError::new("InternalError", msg))
        });
        let stdout = std::mem::take(&mut *self.out.borrow_mut());
        match result {
            Ok(v) => CellOutcome { stdout, value: (!v.is_unit()).then(|| display_value(&v)), error: None },
            Err(e) => {
                if e.ename == "KeyboardInterrupt" {
                    self.interrupt.store(false, Ordering::SeqCst);
                }
                CellOutcome { stdout, value: None, error: Some(e) }
            }
        }
    }

    /// Keeps only the latest scope entry per name (rhai keeps shadowed ones alive), then puts
    /// back any built-in constant that is missing.
    fn compact_scope(&mut self) {
        // `&Scope` iterates oldest first (unlike `iter_raw`, which runs newest first).
        let names: Vec<&str> = (&self.scope).into_iter().map(|(n, _, _)| n).collect();
        let mut last: HashMap<&str, usize> = HashMap::new();
        for (i, name) in names.iter().enumerate() {
            last.insert(name, i);
        }
        if last.len() != names.len() {
            let keep: Vec<bool> =
                names.iter().enumerate().map(|(i, name)| last.get(name) == Some(&i)).collect();
            let old = std::mem::replace(&mut self.scope, Scope::new());
            for ((name, value, _), keep) in old.into_iter().zip(keep) {
                if keep {
                    self.scope.push_dynamic(name, value);
                }
            }
        }
        self.restore_constants();
    }

    fn restore_constants(&mut self) {
        for (name, value) in self.constants.iter() {
            if !self.scope.contains(name) {
                self.scope.push_constant_dynamic(*name, value.clone());
            }
        }
    }

    /// A variable as an array (pull): arrays as they are, numbers and bools as 0-d arrays,
    /// rhai arrays of numbers converted. Error if missing or of another type.
    pub fn get_array(&self, name: &str) -> Result<ArrayValue, CellError> {
        let v = self
            .scope
            .get(name)
            .ok_or_else(|| CellError::new("VariableNotFound", format!("variable '{name}' is not defined")))?;
        if let Some(a) = v.read_lock::<ArrayValue>() {
            return Ok(a.clone());
        }
        if let Some(list) = v.read_lock::<Array>() {
            return builtins::from_rhai(&list, None);
        }
        let scalar = |a: ArrayValue| a.reshape(&[]);
        if let Ok(b) = v.as_bool() {
            return crate::ops::from_shape_vec(&[], vec![b]);
        }
        match builtins::number(v) {
            Ok(crate::array::Scalar::F(x)) => scalar(ArrayValue::from_vec_f64(vec![x])),
            Ok(crate::array::Scalar::I(n)) => crate::ops::from_shape_vec(&[], vec![n]),
            Err(_) => Err(CellError::new(
                "TypeError",
                format!("variable '{name}' is a {}, not an array", v.type_name()),
            )),
        }
    }

    /// Binds a variable to an array (push), replacing any previous binding (old one freed).
    pub fn set_array(&mut self, name: &str, value: ArrayValue) {
        self.set_value(name, Dynamic::from(value));
    }

    /// Binds a variable to any value, replacing any previous binding (even a constant).
    pub fn set_value(&mut self, name: &str, value: Dynamic) {
        self.scope.push_dynamic(name.to_string(), value);
        self.compact_scope();
    }

    /// A variable's value (a cheap clone for arrays), if it exists.
    pub fn get_value(&self, name: &str) -> Option<Dynamic> {
        self.scope.get(name).map(Dynamic::flatten_clone)
    }

    /// Sets the deepest nesting of function calls a cell may reach before a `RecursionError`.
    /// Keep it within what the running thread's stack holds (see [`MAX_CALL_LEVELS`]).
    pub fn set_max_call_levels(&mut self, levels: usize) {
        self.engine.set_max_call_levels(levels);
    }

    /// Number of cells executed so far (1-based after the first).
    pub fn execution_count(&self) -> u64 {
        self.count
    }

    /// Number of entries in the persistent scope (after compaction: one per name).
    pub fn scope_len(&self) -> usize {
        self.scope.len()
    }
}
