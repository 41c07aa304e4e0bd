//! The crate's public API as a checked-in list, `public-api.txt`, so that every change to it
//! shows as a diff in review; and the rule that keeps public structs and enums open to growth.
//!
//! # The list
//!
//! CI has no nightly toolchain, so there is no rustdoc JSON: the source is parsed with `syn`,
//! from `src/lib.rs` down every `mod` declaration to its file (`foo.rs`, `foo/mod.rs`, or the
//! file a `#[path]` names). Nothing here knows the crate's file layout.
//!
//! An item is listed when a user can name it: it is `pub`, and every module on its path is `pub`
//! or the item is re-exported (`pub use`, globs included) from a path that is. It is listed once
//! under each public path it has, with its members: the `pub` fields of structs, the variants
//! of enums, the items of traits, the `pub` methods and associated consts of inherent impls, and
//! the trait impls (written or derived) with their items. An impl of a crate trait for a type
//! that is not the crate's (blanket impls included) is listed under the trait; an impl of a
//! foreign trait for a foreign type that mentions a public type (`impl From<Error> for
//! reqwest_middleware::Error`) under that type. A `pub use` of another crate's item is listed
//! as the re-export itself: `pub use async_trait::async_trait as reqwest_throttle::async_trait`.
//!
//! Each line reads `[cfg] #[attributes] declaration`:
//! - `[feature = "redis"]`: every `cfg` the item needs, on its definition, its modules and the
//!   re-exports on its path (all of them must hold). Items under `cfg(test)`, `cfg(doctest)` or
//!   `cfg(docsrs)` are not part of a user's build and are left out.
//! - the attributes a user can feel: `#[macro_export]`, `#[doc(hidden)]`, `#[deprecated]`,
//!   `#[non_exhaustive]`, `#[must_use]`, `#[repr(…)]`, `#[async_trait]`; `#[derive]` marks a
//!   derived impl.
//! - `#[doc(hidden)]` items are **listed, marked `#[doc(hidden)]`** (so is everything reached
//!   through a hidden module or re-export): users can still reach them, and a change to them
//!   still shows.
//! - signatures print compactly, with every path in them as a user names it: the crate's items
//!   by their shortest public path, other crates' items by the path they are imported with
//!   (`pub fn reqwest_throttle::Rate::new(count: u64, period: std::time::Duration) ->
//!   reqwest_throttle::Rate`). Moving code between files or rewriting imports therefore changes
//!   no line; only a change users can see does. What has no public path (a private type, `Self`,
//!   a generic parameter, a prelude name) prints as written, and a parameter's `mut` is dropped.
//! - only `derive`s count inside a `cfg_attr` (with its `cfg` in the line).
//! - lines are sorted by path: a type, then its members, then its trait impls.
//!
//! What source parsing cannot see is named instead of guessed: a macro invocation at item level
//! in a public module or in an impl or trait listed here, a `pub use` that resolves to nothing
//! the parser knows, and the `pub` items of an `extern` block are listed as `unresolved …`. Not
//! visible at all: items and impls that a macro generates elsewhere (a `#[async_trait]` method
//! is listed as the `async fn` it is written as), and the auto traits (`Send`, `Sync`, `Unpin`)
//! a type gets from its fields.
//!
//! `UPDATE_PUBLIC_API=1 cargo test --test public_api` rewrites the list.
//!
//! # The rule for structs and enums
//!
//! Every public struct and enum (listed under a public path, and not `#[doc(hidden)]`) is
//! either `#[non_exhaustive]`, or its doc comment has a line that starts with
//! `This type is frozen:` followed by the reason, on that line or on the next one:
//!
//! ```text
//! /// This type is frozen: a rate is a count per interval, and stays one.
//! ```

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Component, Path, PathBuf};
use std::{env, fs};

use proc_macro2::{Delimiter, Spacing, TokenStream, TokenTree};
use quote::ToTokens;
use syn::punctuated::Punctuated;
use syn::visit::Visit;
use syn::{
    Fields, FnArg, ImplItem, Item, Meta, Pat, ReturnType, Signature, Token, TraitItem, Type,
    UseTree, Visibility,
};

const LIST_FILE: &str = "public-api.txt";
const UPDATE_VAR: &str = "UPDATE_PUBLIC_API";
const FROZEN_MARK: &str = "This type is frozen:";

// ---------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------

/// The crate as a user sees it: its library name and its root file.
fn this_crate() -> Result<Api, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src")
        .join("lib.rs");
    // `[lib] name` is the package name with `-` as `_` here.
    let name = env!("CARGO_PKG_NAME").replace('-', "_");
    analyze(&Disk, &root, &name)
}

#[test]
fn public_api_matches_the_checked_in_list() {
    let api = this_crate().unwrap_or_else(|error| panic!("cannot read the crate: {error}"));
    let current = api.render();
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join(LIST_FILE);
    let update =
        matches!(env::var(UPDATE_VAR).as_deref(), Ok(value) if !value.is_empty() && value != "0");
    if update {
        if let Err(error) = fs::write(&file, &current) {
            panic!("cannot write {}: {error}", file.display());
        }
        return;
    }
    let checked_in = fs::read_to_string(&file).unwrap_or_default();
    let old: Vec<&str> = checked_in.lines().map(str::trim_end).collect();
    let new: Vec<&str> = current.lines().collect();
    if old != new {
        panic!(
            "the public API differs from {LIST_FILE}:\n\n--- {LIST_FILE}\n+++ the crate's source\n{}\n\
             If the change is intended, run `{UPDATE_VAR}=1 cargo test --test public_api` to \
             accept the change, and commit {LIST_FILE} with it.",
            unified_diff(&old, &new, 3)
        );
    }
}

#[test]
fn public_structs_and_enums_are_non_exhaustive_or_frozen() {
    let api = this_crate().unwrap_or_else(|error| panic!("cannot read the crate: {error}"));
    assert!(
        api.offenders.is_empty(),
        "{} public structs and enums are neither #[non_exhaustive] nor documented with a line \
         starting `{FROZEN_MARK}` followed by the reason (see this file's module doc):\n  {}",
        api.offenders.len(),
        api.offenders.join("\n  ")
    );
}

// ---------------------------------------------------------------------------------------------
// Source files and modules
// ---------------------------------------------------------------------------------------------

/// Where source files come from: the disk for the crate, a map for the tests of this file.
trait Files {
    fn read(&self, path: &Path) -> Option<String>;
}

struct Disk;

impl Files for Disk {
    fn read(&self, path: &Path) -> Option<String> {
        fs::read_to_string(path).ok()
    }
}

impl Files for HashMap<PathBuf, String> {
    fn read(&self, path: &Path) -> Option<String> {
        self.get(path).cloned()
    }
}

type ModId = usize;
const ROOT: ModId = 0;

struct Module {
    parent: Option<ModId>,
    /// Declared `pub` (the crate root counts as public).
    public: bool,
    /// The `cfg`s from the crate root down to this module's declaration.
    cfg: BTreeSet<String>,
    /// The items that exist in some user's build, with what their attributes say.
    items: Vec<(Item, Attrs)>,
    /// The module an item `mod` of `items` (by index) declares.
    children: HashMap<usize, ModId>,
}

/// Where a module's `mod` declarations find their files.
struct Dirs {
    /// `mod foo;` is `children/foo.rs` or `children/foo/mod.rs`.
    children: PathBuf,
    /// `#[path = "p"] mod foo;` is `path_base/p`.
    path_base: PathBuf,
}

struct Loader<'f> {
    files: &'f dyn Files,
    modules: Vec<Module>,
    errors: Vec<String>,
}

struct Decl {
    parent: Option<ModId>,
    public: bool,
    cfg: BTreeSet<String>,
}

fn load_crate(files: &dyn Files, root: &Path) -> Result<Vec<Module>, String> {
    let mut loader = Loader {
        files,
        modules: Vec::new(),
        errors: Vec::new(),
    };
    let text = files
        .read(root)
        .ok_or_else(|| format!("{} not found", root.display()))?;
    let decl = Decl {
        parent: None,
        public: true,
        cfg: BTreeSet::new(),
    };
    loader.load_file(root, &text, true, decl);
    if loader.errors.is_empty() {
        Ok(loader.modules)
    } else {
        Err(loader.errors.join("\n"))
    }
}

impl Loader<'_> {
    /// A module in its own file; `mod_rs` for the crate root, `mod.rs` and `#[path]` files,
    /// whose submodules sit beside them rather than in a folder named after them.
    fn load_file(&mut self, file: &Path, text: &str, mod_rs: bool, decl: Decl) -> Option<ModId> {
        let ast = match syn::parse_file(text) {
            Ok(ast) => ast,
            Err(error) => {
                self.errors
                    .push(format!("{}: cannot parse: {error}", file.display()));
                return None;
            }
        };
        let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
        let children = match (mod_rs, file.file_stem()) {
            (false, Some(stem)) => dir.join(stem),
            _ => dir.clone(),
        };
        let dirs = Dirs {
            children,
            path_base: dir,
        };
        Some(self.add_module(decl, ast.items, &dirs))
    }

    fn add_module(&mut self, decl: Decl, items: Vec<Item>, dirs: &Dirs) -> ModId {
        let id = self.modules.len();
        let items: Vec<(Item, Attrs)> = items
            .into_iter()
            .map(|item| {
                let attrs = read_attrs(item_attrs(&item));
                (item, attrs)
            })
            .filter(|(_, attrs)| !attrs.excluded)
            .collect();
        let declared: Vec<(usize, syn::ItemMod, Attrs)> = items
            .iter()
            .enumerate()
            .filter_map(|(index, (item, attrs))| match item {
                Item::Mod(module) => Some((index, module.clone(), attrs.clone())),
                _ => None,
            })
            .collect();
        self.modules.push(Module {
            parent: decl.parent,
            public: decl.public,
            cfg: decl.cfg.clone(),
            items,
            children: HashMap::new(),
        });
        for (index, module, attrs) in declared {
            let name = module.ident.to_string();
            let mut cfg = decl.cfg.clone();
            cfg.extend(attrs.cfg.iter().cloned());
            let child = Decl {
                parent: Some(id),
                public: is_pub(&module.vis),
                cfg,
            };
            let child_id = if let Some((_, content)) = module.content {
                let inline = dirs.children.join(&name);
                let inline_dirs = Dirs {
                    children: inline.clone(),
                    path_base: inline,
                };
                Some(self.add_module(child, content, &inline_dirs))
            } else if let Some(path) = &attrs.path {
                let file = normalize(&dirs.path_base.join(path));
                match self.files.read(&file) {
                    Some(text) => self.load_file(&file, &text, true, child),
                    None => {
                        self.errors.push(format!(
                            "module `{name}`: #[path] file {} not found",
                            file.display()
                        ));
                        None
                    }
                }
            } else {
                let flat = dirs.children.join(format!("{name}.rs"));
                let nested = dirs.children.join(&name).join("mod.rs");
                if let Some(text) = self.files.read(&flat) {
                    self.load_file(&flat, &text, false, child)
                } else if let Some(text) = self.files.read(&nested) {
                    self.load_file(&nested, &text, true, child)
                } else {
                    self.errors.push(format!(
                        "module `{name}`: neither {} nor {} found",
                        flat.display(),
                        nested.display()
                    ));
                    None
                }
            };
            if let Some(child_id) = child_id {
                if let Some(parent) = self.modules.get_mut(id) {
                    parent.children.insert(index, child_id);
                }
            }
        }
        id
    }
}

/// `a/b/../c` as `a/c`, without touching the disk (the tests' files are in a map).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

fn is_pub(vis: &Visibility) -> bool {
    matches!(vis, Visibility::Public(_))
}

fn item_attrs(item: &Item) -> &[syn::Attribute] {
    match item {
        Item::Const(i) => &i.attrs,
        Item::Enum(i) => &i.attrs,
        Item::ExternCrate(i) => &i.attrs,
        Item::Fn(i) => &i.attrs,
        Item::ForeignMod(i) => &i.attrs,
        Item::Impl(i) => &i.attrs,
        Item::Macro(i) => &i.attrs,
        Item::Mod(i) => &i.attrs,
        Item::Static(i) => &i.attrs,
        Item::Struct(i) => &i.attrs,
        Item::Trait(i) => &i.attrs,
        Item::TraitAlias(i) => &i.attrs,
        Item::Type(i) => &i.attrs,
        Item::Union(i) => &i.attrs,
        Item::Use(i) => &i.attrs,
        _ => &[],
    }
}

/// The name an item defines in its module, and whether it is `pub`.
fn item_name(item: &Item) -> Option<(String, bool)> {
    let (ident, vis) = match item {
        Item::Const(i) => (&i.ident, &i.vis),
        Item::Enum(i) => (&i.ident, &i.vis),
        Item::Fn(i) => (&i.sig.ident, &i.vis),
        Item::Mod(i) => (&i.ident, &i.vis),
        Item::Static(i) => (&i.ident, &i.vis),
        Item::Struct(i) => (&i.ident, &i.vis),
        Item::Trait(i) => (&i.ident, &i.vis),
        Item::TraitAlias(i) => (&i.ident, &i.vis),
        Item::Type(i) => (&i.ident, &i.vis),
        Item::Union(i) => (&i.ident, &i.vis),
        Item::ExternCrate(i) => (i.rename.as_ref().map_or(&i.ident, |(_, r)| r), &i.vis),
        _ => return None,
    };
    Some((ident.to_string(), is_pub(vis)))
}

// ---------------------------------------------------------------------------------------------
// Attributes and cfg
// ---------------------------------------------------------------------------------------------

/// What an item's attributes say about it.
#[derive(Clone, Default)]
struct Attrs {
    /// A `cfg` that no user's build has (`test`, `doctest`, `docsrs`).
    excluded: bool,
    /// The `cfg`s the item needs (all of them).
    cfg: BTreeSet<String>,
    hidden: bool,
    deprecated: bool,
    non_exhaustive: bool,
    must_use: bool,
    macro_export: bool,
    async_trait: bool,
    repr: Option<String>,
    /// `#[derive]`d traits, each with the `cfg` of the `cfg_attr` it sits in.
    derives: Vec<(syn::Path, BTreeSet<String>)>,
    docs: Vec<String>,
    path: Option<String>,
}

impl Attrs {
    /// The attributes shown in a line, in a fixed order.
    fn shown(&self, hidden: bool) -> Vec<String> {
        let mut shown = Vec::new();
        let flags = [
            (self.macro_export, "#[macro_export]"),
            (hidden || self.hidden, "#[doc(hidden)]"),
            (self.deprecated, "#[deprecated]"),
            (self.non_exhaustive, "#[non_exhaustive]"),
            (self.must_use, "#[must_use]"),
        ];
        shown.extend(
            flags
                .iter()
                .filter(|(on, _)| *on)
                .map(|(_, s)| s.to_string()),
        );
        shown.extend(self.repr.iter().cloned());
        if self.async_trait {
            shown.push("#[async_trait]".to_string());
        }
        shown
    }

    /// The doc comment has a line starting `This type is frozen:` followed by a reason, on that
    /// line or the next.
    fn frozen(&self) -> bool {
        let lines: Vec<&str> = self
            .docs
            .iter()
            .flat_map(|doc| doc.lines())
            .map(str::trim)
            .collect();
        lines.iter().enumerate().any(|(at, line)| {
            line.strip_prefix(FROZEN_MARK).is_some_and(|reason| {
                !reason.trim().is_empty() || lines.get(at + 1).is_some_and(|next| !next.is_empty())
            })
        })
    }
}

fn read_attrs(attrs: &[syn::Attribute]) -> Attrs {
    let mut out = Attrs::default();
    for attr in attrs {
        read_meta(&attr.meta, &BTreeSet::new(), &mut out);
    }
    out
}

/// One attribute; `gate` is the `cfg` of the `cfg_attr` it sits in, if any.
fn read_meta(meta: &Meta, gate: &BTreeSet<String>, out: &mut Attrs) {
    let path = meta.path();
    let last = path
        .segments
        .last()
        .map(|segment| segment.ident.to_string())
        .unwrap_or_default();
    let ungated = gate.is_empty();
    match (last.as_str(), meta) {
        ("cfg", Meta::List(list)) if path.is_ident("cfg") => match list.parse_args::<Meta>() {
            Ok(predicate) => match eval_cfg(&predicate) {
                Cfg::Never => out.excluded = true,
                Cfg::Always => {}
                Cfg::When(text) => {
                    out.cfg.insert(text);
                }
            },
            Err(_) => {
                out.cfg.insert(compact(list.tokens.clone()));
            }
        },
        ("cfg_attr", Meta::List(list)) if path.is_ident("cfg_attr") => {
            let Ok(args) = list.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)
            else {
                return;
            };
            let mut args = args.into_iter();
            let Some(predicate) = args.next() else {
                return;
            };
            let mut inner = gate.clone();
            match eval_cfg(&predicate) {
                Cfg::Never => return,
                Cfg::Always => {}
                Cfg::When(text) => {
                    inner.insert(text);
                }
            }
            for meta in args {
                read_meta(&meta, &inner, out);
            }
        }
        ("derive", Meta::List(list)) if path.is_ident("derive") => {
            if let Ok(paths) =
                list.parse_args_with(Punctuated::<syn::Path, Token![,]>::parse_terminated)
            {
                out.derives
                    .extend(paths.into_iter().map(|path| (path, gate.clone())));
            }
        }
        // Other attributes count only when they always apply.
        _ if !ungated => {}
        ("doc", Meta::NameValue(nv)) if path.is_ident("doc") => {
            if let syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(text),
                ..
            }) = &nv.value
            {
                out.docs.push(text.value());
            }
        }
        ("doc", Meta::List(list)) if path.is_ident("doc") => {
            let hidden = list
                .tokens
                .clone()
                .into_iter()
                .any(|token| matches!(&token, TokenTree::Ident(ident) if ident == "hidden"));
            out.hidden |= hidden;
        }
        ("path", Meta::NameValue(nv)) if path.is_ident("path") => {
            if let syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(text),
                ..
            }) = &nv.value
            {
                out.path = Some(text.value());
            }
        }
        ("non_exhaustive", _) if path.is_ident("non_exhaustive") => out.non_exhaustive = true,
        ("must_use", _) if path.is_ident("must_use") => out.must_use = true,
        ("deprecated", _) if path.is_ident("deprecated") => out.deprecated = true,
        ("macro_export", _) if path.is_ident("macro_export") => out.macro_export = true,
        ("repr", _) if path.is_ident("repr") => {
            out.repr = Some(format!("#[{}]", compact(meta.to_token_stream())));
        }
        ("async_trait", _) => out.async_trait = true,
        _ => {}
    }
}

/// A `cfg` predicate, simplified for a user's build: `test`, `doctest` and `docsrs` never hold;
/// anything else (features, targets) may.
#[derive(Clone, Debug, PartialEq)]
enum Cfg {
    Always,
    Never,
    When(String),
}

fn eval_cfg(meta: &Meta) -> Cfg {
    let as_written = || Cfg::When(compact(meta.to_token_stream()));
    match meta {
        Meta::Path(path)
            if ["test", "doctest", "docsrs"]
                .iter()
                .any(|n| path.is_ident(n)) =>
        {
            Cfg::Never
        }
        Meta::List(list) => {
            let Ok(args) = list.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)
            else {
                return as_written();
            };
            let parts: Vec<Cfg> = args.iter().map(eval_cfg).collect();
            if list.path.is_ident("not") {
                match parts.as_slice() {
                    [Cfg::Always] => Cfg::Never,
                    [Cfg::Never] => Cfg::Always,
                    [Cfg::When(text)] => Cfg::When(format!("not({text})")),
                    _ => as_written(),
                }
            } else if list.path.is_ident("all") {
                combine_cfg(parts, "all", Cfg::Never, Cfg::Always)
            } else if list.path.is_ident("any") {
                combine_cfg(parts, "any", Cfg::Always, Cfg::Never)
            } else {
                as_written()
            }
        }
        _ => as_written(),
    }
}

fn combine_cfg(parts: Vec<Cfg>, name: &str, absorbing: Cfg, neutral: Cfg) -> Cfg {
    if parts.contains(&absorbing) {
        return absorbing;
    }
    let rest: Vec<String> = parts
        .into_iter()
        .filter_map(|part| match part {
            Cfg::When(text) => Some(text),
            _ => None,
        })
        .collect();
    match rest.as_slice() {
        [] => neutral,
        [one] => Cfg::When(one.clone()),
        _ => Cfg::When(format!("{name}({})", rest.join(", "))),
    }
}

// ---------------------------------------------------------------------------------------------
// Name resolution
// ---------------------------------------------------------------------------------------------

/// What a path names.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Target {
    Module(ModId),
    /// An item of a module (by index): struct, enum, union, trait, fn, const, static, type,
    /// trait alias, exported macro.
    Item(ModId, usize),
    /// A variant of an enum item.
    Variant(ModId, usize, usize),
    /// Another crate's item (or the standard library's), as its path is written.
    External(String),
    /// A `pub use` whose path names nothing this parser knows.
    Unresolved(String),
}

/// A target, with the `cfg`s of the imports the path went through.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Found {
    target: Target,
    cfg: BTreeSet<String>,
}

impl Found {
    fn plain(target: Target) -> Found {
        Found {
            target,
            cfg: BTreeSet::new(),
        }
    }

    fn gated(mut self, cfg: &BTreeSet<String>) -> Found {
        self.cfg.extend(cfg.iter().cloned());
        self
    }
}

/// One leaf of a `use` tree: `use a::b as c;` is named `c` with path `a::b`; a glob has no name.
struct Import {
    name: Option<String>,
    path: Vec<String>,
    absolute: bool,
    public: bool,
    /// The `use` item (index in its module).
    item: usize,
}

fn flatten_use(
    tree: &UseTree,
    prefix: &mut Vec<String>,
    out: &mut Vec<(Option<String>, Vec<String>)>,
) {
    let leaf = |prefix: &[String], ident: &syn::Ident| -> Vec<String> {
        let mut path = prefix.to_vec();
        if ident != "self" {
            path.push(ident.to_string());
        }
        path
    };
    match tree {
        UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            flatten_use(&p.tree, prefix, out);
            prefix.pop();
        }
        UseTree::Name(n) => {
            let path = leaf(prefix, &n.ident);
            let name = path.last().cloned();
            out.push((name, path));
        }
        UseTree::Rename(r) => {
            // `use Trait as _;` names nothing.
            if r.rename != "_" {
                out.push((Some(r.rename.to_string()), leaf(prefix, &r.ident)));
            }
        }
        UseTree::Glob(_) => out.push((None, prefix.clone())),
        UseTree::Group(g) => {
            for tree in &g.items {
                flatten_use(tree, prefix, out);
            }
        }
    }
}

struct Resolver<'c> {
    modules: &'c [Module],
    /// The names each module defines itself.
    locals: Vec<HashMap<String, Vec<Target>>>,
    imports: Vec<Vec<Import>>,
}

impl<'c> Resolver<'c> {
    fn new(modules: &'c [Module]) -> Resolver<'c> {
        let mut locals: Vec<HashMap<String, Vec<Target>>> = vec![HashMap::new(); modules.len()];
        let mut imports: Vec<Vec<Import>> = modules.iter().map(|_| Vec::new()).collect();
        let mut exported_macros = Vec::new();
        for (id, module) in modules.iter().enumerate() {
            for (index, (item, attrs)) in module.items.iter().enumerate() {
                let (name, target) = match item {
                    Item::Use(u) => {
                        let mut leaves = Vec::new();
                        flatten_use(&u.tree, &mut Vec::new(), &mut leaves);
                        for (name, path) in leaves {
                            imports[id].push(Import {
                                name,
                                path,
                                absolute: u.leading_colon.is_some(),
                                public: is_pub(&u.vis),
                                item: index,
                            });
                        }
                        continue;
                    }
                    Item::Macro(m) => {
                        if let (Some(ident), true) = (&m.ident, attrs.macro_export) {
                            exported_macros.push((ident.to_string(), Target::Item(id, index)));
                        }
                        continue;
                    }
                    Item::Mod(m) => match module.children.get(&index) {
                        Some(child) => (m.ident.to_string(), Target::Module(*child)),
                        None => continue,
                    },
                    Item::ExternCrate(e) => {
                        let Some((name, _)) = item_name(item) else {
                            continue;
                        };
                        let target = if e.ident == "self" {
                            Target::Module(ROOT)
                        } else {
                            Target::External(e.ident.to_string())
                        };
                        (name, target)
                    }
                    _ => match item_name(item) {
                        Some((name, _)) => (name, Target::Item(id, index)),
                        None => continue,
                    },
                };
                locals[id].entry(name).or_default().push(target);
            }
        }
        if let Some(root) = locals.get_mut(ROOT) {
            for (name, target) in exported_macros {
                root.entry(name).or_default().push(target);
            }
        }
        Resolver {
            modules,
            locals,
            imports,
        }
    }

    fn item(&self, module: ModId, index: usize) -> Option<&'c (Item, Attrs)> {
        self.modules.get(module)?.items.get(index)
    }

    fn parent(&self, module: ModId) -> Option<ModId> {
        self.modules.get(module)?.parent
    }

    /// What `name` means inside `module`: its own items, its named imports, else its globs.
    /// An import being resolved is not in scope for its own path (`pub use a::a;` where `mod a`
    /// defines a function `a`), which also breaks cycles (`use super::*` both ways): `visiting`
    /// holds those, and sees only the module's own items.
    fn lookup(&self, module: ModId, name: &str, visiting: &mut Vec<(ModId, String)>) -> Vec<Found> {
        let mut found: Vec<Found> = self
            .locals
            .get(module)
            .and_then(|names| names.get(name))
            .into_iter()
            .flatten()
            .map(|target| Found::plain(target.clone()))
            .collect();
        let key = (module, name.to_string());
        if visiting.contains(&key) {
            return found;
        }
        visiting.push(key);
        let imports = self
            .imports
            .get(module)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for import in imports.iter().filter(|i| i.name.as_deref() == Some(name)) {
            let cfg = self.import_cfg(module, import);
            for f in self.resolve(module, &import.path, import.absolute, visiting) {
                found.push(f.gated(&cfg));
            }
        }
        if found.is_empty() {
            for import in imports.iter().filter(|i| i.name.is_none()) {
                let cfg = self.import_cfg(module, import);
                for glob in self.resolve(module, &import.path, import.absolute, visiting) {
                    let through = glob.cfg.clone();
                    match glob.target {
                        Target::Module(from) => found.extend(
                            self.lookup(from, name, visiting)
                                .into_iter()
                                .map(|f| f.gated(&through).gated(&cfg)),
                        ),
                        Target::Item(m, i) => {
                            if let Some(v) = self.variant(m, i, name) {
                                found.push(Found::plain(v).gated(&through).gated(&cfg));
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        visiting.pop();
        dedup(found)
    }

    fn import_cfg(&self, module: ModId, import: &Import) -> BTreeSet<String> {
        self.item(module, import.item)
            .map(|(_, attrs)| attrs.cfg.clone())
            .unwrap_or_default()
    }

    fn variant(&self, module: ModId, index: usize, name: &str) -> Option<Target> {
        match self.item(module, index) {
            Some((Item::Enum(e), _)) => e
                .variants
                .iter()
                .position(|v| v.ident == name)
                .map(|at| Target::Variant(module, index, at)),
            _ => None,
        }
    }

    /// What a path written inside `module` names. A first segment the crate does not define is
    /// another crate (or the prelude).
    fn resolve(
        &self,
        module: ModId,
        path: &[String],
        absolute: bool,
        visiting: &mut Vec<(ModId, String)>,
    ) -> Vec<Found> {
        let Some((first, rest)) = path.split_first() else {
            return Vec::new();
        };
        if absolute {
            return vec![Found::plain(Target::External(path.join("::")))];
        }
        let mut current = match first.as_str() {
            "crate" => vec![Found::plain(Target::Module(ROOT))],
            "self" => vec![Found::plain(Target::Module(module))],
            "super" => self
                .parent(module)
                .map(|p| Found::plain(Target::Module(p)))
                .into_iter()
                .collect(),
            "Self" => return Vec::new(),
            name => {
                let found = self.lookup(module, name, visiting);
                if found.is_empty() {
                    vec![Found::plain(Target::External(name.to_string()))]
                } else {
                    found
                }
            }
        };
        for segment in rest {
            let mut next = Vec::new();
            for found in current {
                let cfg = found.cfg.clone();
                match &found.target {
                    Target::Module(m) => match segment.as_str() {
                        "self" => next.push(found.clone()),
                        "super" => {
                            if let Some(p) = self.parent(*m) {
                                next.push(Found::plain(Target::Module(p)).gated(&cfg));
                            }
                        }
                        _ => next.extend(
                            self.lookup(*m, segment, visiting)
                                .into_iter()
                                .map(|f| f.gated(&cfg)),
                        ),
                    },
                    Target::Item(m, i) => {
                        if let Some(v) = self.variant(*m, *i, segment) {
                            next.push(Found::plain(v).gated(&cfg));
                        }
                    }
                    Target::External(p) => {
                        next.push(
                            Found::plain(Target::External(format!("{p}::{segment}"))).gated(&cfg),
                        );
                    }
                    _ => {}
                }
            }
            current = dedup(next);
        }
        current
    }

    fn resolve_path(&self, module: ModId, path: &syn::Path) -> Vec<Found> {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        self.resolve(
            module,
            &segments,
            path.leading_colon.is_some(),
            &mut Vec::new(),
        )
    }

    /// Whether a `pub use` may make `target` public (its own visibility is `pub`).
    fn reexportable(&self, target: &Target) -> bool {
        match target {
            Target::Module(m) => self.modules.get(*m).is_some_and(|m| m.public),
            Target::Item(m, i) | Target::Variant(m, i, _) => match self.item(*m, *i) {
                Some((Item::Macro(_), attrs)) => attrs.macro_export,
                Some((item, _)) => item_name(item).is_some_and(|(_, public)| public),
                None => false,
            },
            Target::External(_) | Target::Unresolved(_) => true,
        }
    }

    /// The names `module` makes public: its `pub` items, its `pub use`s, its `pub use` globs
    /// (minus the names it defines itself) and, at the root, the exported macros.
    fn exports(&self, module: ModId, stack: &mut Vec<ModId>) -> Vec<Export> {
        let Some(m) = self.modules.get(module) else {
            return Vec::new();
        };
        if stack.contains(&module) {
            return Vec::new();
        }
        stack.push(module);
        let mut out = Vec::new();
        for (index, (item, attrs)) in m.items.iter().enumerate() {
            let plain = |target: Target| Found::plain(target).gated(&attrs.cfg);
            match item {
                Item::Use(_) | Item::Impl(_) | Item::Macro(_) => {}
                Item::Mod(_) => {
                    if let (Some((name, true)), Some(child)) =
                        (item_name(item), m.children.get(&index))
                    {
                        out.push(Export::new(
                            name,
                            plain(Target::Module(*child)),
                            attrs.hidden,
                        ));
                    }
                }
                Item::ExternCrate(e) => {
                    if let Some((name, true)) = item_name(item) {
                        let target = Target::External(e.ident.to_string());
                        out.push(Export::new(name, plain(target), attrs.hidden));
                    }
                }
                _ => {
                    if let Some((name, true)) = item_name(item) {
                        out.push(Export::new(
                            name,
                            plain(Target::Item(module, index)),
                            attrs.hidden,
                        ));
                    }
                }
            }
        }
        if module == ROOT {
            for (id, each) in self.modules.iter().enumerate() {
                for (index, (item, attrs)) in each.items.iter().enumerate() {
                    if let (Item::Macro(mac), true) = (item, attrs.macro_export) {
                        if let Some(ident) = &mac.ident {
                            let found = Found::plain(Target::Item(id, index)).gated(&attrs.cfg);
                            out.push(Export::new(ident.to_string(), found, attrs.hidden));
                        }
                    }
                }
            }
        }
        let imports = self
            .imports
            .get(module)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for import in imports.iter().filter(|i| i.public) {
            let Some((_, attrs)) = self.item(module, import.item) else {
                continue;
            };
            // The import's own name is not in scope for its path: `pub use a::a;` starts from
            // the crate `a`.
            let mut visiting: Vec<(ModId, String)> = import
                .name
                .iter()
                .map(|name| (module, name.clone()))
                .collect();
            let found = self.resolve(module, &import.path, import.absolute, &mut visiting);
            match &import.name {
                Some(name) => {
                    let usable: Vec<Found> = found
                        .into_iter()
                        .filter(|f| self.reexportable(&f.target))
                        .collect();
                    if usable.is_empty() {
                        let unresolved = Target::Unresolved(import.path.join("::"));
                        out.push(Export::new(
                            name.clone(),
                            Found::plain(unresolved).gated(&attrs.cfg),
                            attrs.hidden,
                        ));
                    }
                    for f in usable {
                        out.push(Export::new(name.clone(), f.gated(&attrs.cfg), attrs.hidden));
                    }
                }
                None => {
                    let own: HashSet<&str> = self
                        .locals
                        .get(module)
                        .into_iter()
                        .flat_map(|names| names.keys().map(String::as_str))
                        .chain(imports.iter().filter_map(|i| i.name.as_deref()))
                        .collect();
                    for glob in found {
                        match &glob.target {
                            Target::Module(from) => {
                                for e in self.exports(*from, stack) {
                                    if !own.contains(e.name.as_str()) {
                                        let f = e.found.gated(&glob.cfg).gated(&attrs.cfg);
                                        out.push(Export::new(e.name, f, e.hidden || attrs.hidden));
                                    }
                                }
                            }
                            Target::Item(m, i) => {
                                if let Some((Item::Enum(e), _)) = self.item(*m, *i) {
                                    for (at, v) in e.variants.iter().enumerate() {
                                        let f = Found::plain(Target::Variant(*m, *i, at))
                                            .gated(&glob.cfg)
                                            .gated(&attrs.cfg);
                                        out.push(Export::new(v.ident.to_string(), f, attrs.hidden));
                                    }
                                }
                            }
                            Target::External(p) => {
                                let f = Found::plain(Target::External(format!("{p}::*")))
                                    .gated(&attrs.cfg);
                                out.push(Export::new("*".to_string(), f, attrs.hidden));
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
        stack.pop();
        out
    }
}

fn dedup(found: Vec<Found>) -> Vec<Found> {
    let mut out: Vec<Found> = Vec::new();
    for f in found {
        if !out.contains(&f) {
            out.push(f);
        }
    }
    out
}

/// A name a module makes public.
struct Export {
    name: String,
    found: Found,
    hidden: bool,
}

impl Export {
    fn new(name: String, found: Found, hidden: bool) -> Export {
        Export {
            name,
            found,
            hidden,
        }
    }
}

/// One public path to a target.
#[derive(Clone)]
struct Reach {
    path: Vec<String>,
    cfg: BTreeSet<String>,
    hidden: bool,
}

// ---------------------------------------------------------------------------------------------
// The API
// ---------------------------------------------------------------------------------------------

/// Sort key: path segments; rank 0 for items and members, 1 for impls (after the members), 2
/// for what could not be resolved.
type Key = Vec<(u8, String)>;

struct Api {
    lines: BTreeSet<(Key, String)>,
    /// Public structs and enums that are neither `#[non_exhaustive]` nor frozen, by path.
    offenders: Vec<String>,
}

impl Api {
    fn render(&self) -> String {
        let mut out = String::new();
        for (_, line) in &self.lines {
            out.push_str(line);
            out.push('\n');
        }
        out
    }
}

fn analyze(files: &dyn Files, root: &Path, crate_name: &str) -> Result<Api, String> {
    let modules = load_crate(files, root)?;
    let resolver = Resolver::new(&modules);

    let mut reaches: HashMap<Target, Vec<Reach>> = HashMap::new();
    let start = Reach {
        path: vec![crate_name.to_string()],
        cfg: BTreeSet::new(),
        hidden: false,
    };
    let mut unresolved = Vec::new();
    walk(
        &resolver,
        ROOT,
        &start,
        &mut vec![ROOT],
        &mut reaches,
        &mut unresolved,
    );

    let mut emitter = Emitter {
        resolver: &resolver,
        reaches: &reaches,
        impls: HashMap::new(),
        lines: RefCell::new(unresolved.into_iter().collect()),
    };
    emitter.impls = emitter.index_impls();
    let mut targets: Vec<(&Target, &Vec<Reach>)> = reaches.iter().collect();
    targets.sort_by(|a, b| a.0.cmp(b.0));
    for (target, paths) in &targets {
        for reach in paths.iter() {
            emitter.emit(target, reach);
        }
    }

    let mut offenders = Vec::new();
    for (target, paths) in &targets {
        let Target::Item(m, i) = target else {
            continue;
        };
        let Some((item, attrs)) = resolver.item(*m, *i) else {
            continue;
        };
        if !matches!(item, Item::Struct(_) | Item::Enum(_)) || attrs.hidden {
            continue;
        }
        let mut shown: Vec<&Vec<String>> = paths
            .iter()
            .filter(|reach| !reach.hidden)
            .map(|reach| &reach.path)
            .collect();
        shown.sort_by(|a, b| (a.len(), a).cmp(&(b.len(), b)));
        shown.dedup();
        let mut shown = shown.into_iter().map(|path| path.join("::"));
        let Some(first) = shown.next() else {
            continue;
        };
        if attrs.non_exhaustive || attrs.frozen() {
            continue;
        }
        let others: Vec<String> = shown.collect();
        offenders.push(if others.is_empty() {
            first
        } else {
            format!("{first} (also {})", others.join(", "))
        });
    }
    offenders.sort();
    Ok(Api {
        lines: emitter.lines.into_inner(),
        offenders,
    })
}

/// Every public path from `module` down, and what it names.
fn walk(
    resolver: &Resolver<'_>,
    module: ModId,
    at: &Reach,
    stack: &mut Vec<ModId>,
    reaches: &mut HashMap<Target, Vec<Reach>>,
    unresolved: &mut Vec<(Key, String)>,
) {
    if let Some(m) = resolver.modules.get(module) {
        for (item, _) in &m.items {
            let name = match item {
                Item::Macro(mac) if mac.ident.is_none() => {
                    format!(
                        "macro invocation {}!",
                        compact(mac.mac.path.to_token_stream())
                    )
                }
                Item::Verbatim(_) => "an item syn cannot parse".to_string(),
                Item::ForeignMod(f) if f.items.iter().any(foreign_is_pub) => {
                    "pub items of an extern block".to_string()
                }
                _ => continue,
            };
            let path = at.path.join("::");
            unresolved.push((
                key_of(&at.path, 2, &name),
                format!("unresolved in {path}: {name}"),
            ));
        }
    }
    for export in resolver.exports(module, &mut Vec::new()) {
        let mut reach = at.clone();
        reach.path.push(export.name);
        reach.cfg.extend(export.found.cfg.iter().cloned());
        reach.hidden |= export.hidden;
        if let Target::Module(child) = export.found.target {
            if !stack.contains(&child) {
                stack.push(child);
                walk(resolver, child, &reach, stack, reaches, unresolved);
                stack.pop();
            }
        }
        reaches.entry(export.found.target).or_default().push(reach);
    }
}

fn foreign_is_pub(item: &syn::ForeignItem) -> bool {
    match item {
        syn::ForeignItem::Fn(f) => is_pub(&f.vis),
        syn::ForeignItem::Static(s) => is_pub(&s.vis),
        syn::ForeignItem::Type(t) => is_pub(&t.vis),
        _ => false,
    }
}

fn key_of(path: &[String], rank: u8, tail: &str) -> Key {
    let mut key: Key = path.iter().map(|s| (0, s.clone())).collect();
    key.push((rank, tail.to_string()));
    key
}

/// An impl block, and what its lines need to know about where it is listed.
struct ImplRef {
    module: ModId,
    index: usize,
    /// The `cfg`s of its module, its own and those of the imports its anchor went through.
    cfg: BTreeSet<String>,
    /// Listed under its self type (else under its trait, or a type its header mentions).
    on_self: bool,
}

/// One item's lines, under one of its public paths.
struct Listing<'a> {
    /// The public path, as text.
    path: String,
    key: Key,
    cfg: BTreeSet<String>,
    hidden: bool,
    /// Where the item is written: the module its paths resolve in.
    printer: Printer<'a>,
}

impl Listing<'_> {
    fn member(&self, rank: u8, name: &str) -> Key {
        let mut key = self.key.clone();
        key.push((rank, name.to_string()));
        key
    }
}

struct Emitter<'r, 'c> {
    resolver: &'r Resolver<'c>,
    reaches: &'r HashMap<Target, Vec<Reach>>,
    /// Impl blocks by the item they are listed under.
    impls: HashMap<Target, Vec<ImplRef>>,
    lines: RefCell<BTreeSet<(Key, String)>>,
}

impl Emitter<'_, '_> {
    fn canonical(&self, target: &Target) -> Option<String> {
        self.reaches
            .get(target)?
            .iter()
            .map(|reach| &reach.path)
            .min_by(|a, b| (a.len(), a).cmp(&(b.len(), b)))
            .map(|path| path.join("::"))
    }

    /// A path written in `module`, as a user names it: a public item's shortest public path,
    /// another crate's path as imported; `None` (print as written) for a private item, `Self`
    /// and the like. `Dimension::ALL` is the public path of `Dimension`, then `::ALL`.
    fn rename(&self, module: ModId, segments: &[String]) -> Option<String> {
        (1..=segments.len()).rev().find_map(|take| {
            let found = self
                .resolver
                .resolve(module, &segments[..take], false, &mut Vec::new());
            let public = found.iter().find_map(|f| self.canonical(&f.target));
            let external = found.iter().find_map(|f| match &f.target {
                Target::External(path) => Some(path.clone()),
                _ => None,
            });
            public.or(external).map(|name| {
                std::iter::once(name)
                    .chain(segments[take..].iter().cloned())
                    .collect::<Vec<_>>()
                    .join("::")
            })
        })
    }

    fn printer(&self, module: ModId) -> Printer<'_> {
        Printer {
            emitter: Some(self),
            module,
        }
    }

    /// The crate's struct, enum, union or trait a type names.
    fn local_type(&self, module: ModId, ty: &Type) -> Option<Found> {
        let path = match ty {
            Type::Path(p) if p.qself.is_none() => &p.path,
            Type::Reference(r) => return self.local_type(module, &r.elem),
            Type::Paren(p) => return self.local_type(module, &p.elem),
            _ => return None,
        };
        self.resolver
            .resolve_path(module, path)
            .into_iter()
            .find(|f| self.is_type(&f.target))
    }

    fn is_type(&self, target: &Target) -> bool {
        let Target::Item(m, i) = target else {
            return false;
        };
        matches!(
            self.resolver.item(*m, *i),
            Some((
                Item::Struct(_) | Item::Enum(_) | Item::Union(_) | Item::Trait(_),
                _
            ))
        )
    }

    /// Every impl block of the crate, by the item it is listed under.
    fn index_impls(&self) -> HashMap<Target, Vec<ImplRef>> {
        let mut impls: HashMap<Target, Vec<ImplRef>> = HashMap::new();
        for (id, module) in self.resolver.modules.iter().enumerate() {
            for (index, (item, attrs)) in module.items.iter().enumerate() {
                let Item::Impl(imp) = item else {
                    continue;
                };
                let anchor = if let Some(found) = self.local_type(id, &imp.self_ty) {
                    Some((found, true))
                } else if let Some((_, trait_path, _)) = &imp.trait_ {
                    let on_trait = self
                        .resolver
                        .resolve_path(id, trait_path)
                        .into_iter()
                        .find(|f| self.is_type(&f.target));
                    on_trait
                        .or_else(|| self.mentioned(id, imp))
                        .map(|f| (f, false))
                } else {
                    None
                };
                if let Some((found, on_self)) = anchor {
                    let mut cfg = module.cfg.clone();
                    cfg.extend(attrs.cfg.iter().cloned());
                    cfg.extend(found.cfg.iter().cloned());
                    impls.entry(found.target).or_default().push(ImplRef {
                        module: id,
                        index,
                        cfg,
                        on_self,
                    });
                }
            }
        }
        impls
    }

    /// The first public type of the crate an impl's header mentions.
    fn mentioned(&self, module: ModId, imp: &syn::ItemImpl) -> Option<Found> {
        struct Paths(Vec<syn::Path>);
        impl<'ast> Visit<'ast> for Paths {
            fn visit_path(&mut self, path: &'ast syn::Path) {
                self.0.push(path.clone());
                syn::visit::visit_path(self, path);
            }
        }
        let mut paths = Paths(Vec::new());
        if let Some((_, trait_path, _)) = &imp.trait_ {
            paths.visit_path(trait_path);
        }
        paths.visit_type(&imp.self_ty);
        paths.0.iter().find_map(|path| {
            self.resolver
                .resolve_path(module, path)
                .into_iter()
                .find(|f| self.is_type(&f.target) && self.reaches.contains_key(&f.target))
        })
    }

    fn push(&self, key: Key, cfg: &BTreeSet<String>, attrs: &[String], body: String) {
        let mut line = String::new();
        if !cfg.is_empty() {
            let all: Vec<&str> = cfg.iter().map(String::as_str).collect();
            line.push_str(&format!("[{}] ", all.join(", ")));
        }
        for attr in attrs {
            line.push_str(attr);
            line.push(' ');
        }
        line.push_str(&body);
        self.lines.borrow_mut().insert((key, line));
    }

    fn unresolved(&self, key: Key, text: String) {
        self.lines.borrow_mut().insert((key, text));
    }

    fn emit(&self, target: &Target, reach: &Reach) {
        let path = reach.path.join("::");
        let key: Key = reach.path.iter().map(|s| (0, s.clone())).collect();
        let hidden = if reach.hidden {
            vec!["#[doc(hidden)]".to_string()]
        } else {
            Vec::new()
        };
        match target {
            Target::Module(m) => {
                let mut cfg = reach.cfg.clone();
                if let Some(module) = self.resolver.modules.get(*m) {
                    cfg.extend(module.cfg.iter().cloned());
                }
                self.push(key, &cfg, &hidden, format!("pub mod {path}"));
            }
            Target::External(external) => {
                let body = format!("pub use {external} as {path}");
                self.push(key, &reach.cfg, &hidden, body);
            }
            Target::Unresolved(written) => {
                let body = format!("unresolved pub use {written} as {path}");
                self.push(key_of(&reach.path, 2, written), &reach.cfg, &hidden, body);
            }
            Target::Variant(m, i, at) => {
                let enum_path = self
                    .canonical(&Target::Item(*m, *i))
                    .unwrap_or_else(|| "(a private enum)".to_string());
                let variant = match self.resolver.item(*m, *i) {
                    Some((Item::Enum(e), _)) => {
                        e.variants.iter().nth(*at).map(|v| v.ident.to_string())
                    }
                    _ => None,
                }
                .unwrap_or_default();
                let body = format!("pub use {enum_path}::{variant} as {path}");
                self.push(key, &reach.cfg, &hidden, body);
            }
            Target::Item(m, i) => {
                let Some((item, attrs)) = self.resolver.item(*m, *i) else {
                    return;
                };
                let mut cfg = reach.cfg.clone();
                if let Some(module) = self.resolver.modules.get(*m) {
                    cfg.extend(module.cfg.iter().cloned());
                }
                cfg.extend(attrs.cfg.iter().cloned());
                let listing = Listing {
                    path,
                    key,
                    cfg,
                    hidden: reach.hidden || attrs.hidden,
                    printer: self.printer(*m),
                };
                self.emit_item(item, attrs, target, &listing);
            }
        }
    }

    fn emit_item(&self, item: &Item, attrs: &Attrs, target: &Target, at: &Listing<'_>) {
        let (path, p) = (&at.path, &at.printer);
        let shown = attrs.shown(at.hidden);
        let body = match item {
            Item::Struct(s) => format!("pub struct {path}{}", p.generics(&s.generics)),
            Item::Union(u) => format!("pub union {path}{}", p.generics(&u.generics)),
            Item::Enum(e) => format!("pub enum {path}{}", p.generics(&e.generics)),
            Item::Trait(t) => {
                let mut body = String::new();
                if t.unsafety.is_some() {
                    body.push_str("unsafe ");
                }
                if t.auto_token.is_some() {
                    body.push_str("auto ");
                }
                body.push_str(&format!("pub trait {path}{}", p.tokens(&t.generics)));
                if !t.supertraits.is_empty() {
                    body.push_str(&format!(": {}", p.tokens(&t.supertraits)));
                }
                body.push_str(&p.where_clause(&t.generics));
                body
            }
            Item::Fn(f) => format!("pub {}", p.signature(&f.sig, path)),
            Item::Const(c) => format!("pub const {path}: {}", p.tokens(&c.ty)),
            Item::Static(s) => {
                let mutability = match s.mutability {
                    syn::StaticMutability::Mut(_) => "mut ",
                    _ => "",
                };
                format!("pub static {mutability}{path}: {}", p.tokens(&s.ty))
            }
            Item::Type(t) => format!(
                "pub type {path}{} = {}",
                p.generics(&t.generics),
                p.tokens(&t.ty)
            ),
            Item::TraitAlias(t) => format!(
                "pub trait {path}{} = {}",
                p.generics(&t.generics),
                p.tokens(&t.bounds)
            ),
            Item::Macro(_) => format!("macro_rules! {path}"),
            _ => return,
        };
        self.push(at.key.clone(), &at.cfg, &shown, body);
        match item {
            Item::Struct(s) => self.emit_fields(&s.fields, at),
            Item::Union(u) => self.emit_fields(&Fields::Named(u.fields.clone()), at),
            Item::Enum(e) => {
                for variant in &e.variants {
                    let attrs = read_attrs(&variant.attrs);
                    if attrs.excluded {
                        continue;
                    }
                    let mut text = format!(
                        "pub {path}::{}{}",
                        variant.ident,
                        p.fields_shape(&variant.fields)
                    );
                    if let Some((_, value)) = &variant.discriminant {
                        text.push_str(&format!(" = {}", p.tokens(value)));
                    }
                    let cfg = union(&at.cfg, &attrs.cfg);
                    self.push(
                        at.member(0, &variant.ident.to_string()),
                        &cfg,
                        &attrs.shown(at.hidden),
                        text,
                    );
                }
            }
            Item::Trait(t) => {
                for trait_item in &t.items {
                    self.emit_trait_item(trait_item, at);
                }
            }
            _ => return,
        }
        self.emit_derives(attrs, at);
        self.emit_impls(target, at);
    }

    fn emit_fields(&self, fields: &Fields, at: &Listing<'_>) {
        for (index, field) in fields.iter().enumerate() {
            if !is_pub(&field.vis) {
                continue;
            }
            let attrs = read_attrs(&field.attrs);
            if attrs.excluded {
                continue;
            }
            let name = field
                .ident
                .as_ref()
                .map_or_else(|| index.to_string(), ToString::to_string);
            let body = format!("pub {}::{name}: {}", at.path, at.printer.tokens(&field.ty));
            let cfg = union(&at.cfg, &attrs.cfg);
            self.push(at.member(0, &name), &cfg, &attrs.shown(at.hidden), body);
        }
    }

    fn emit_trait_item(&self, item: &TraitItem, at: &Listing<'_>) {
        let (path, p) = (&at.path, &at.printer);
        let (attrs, name, body) = match item {
            TraitItem::Fn(f) => {
                let name = f.sig.ident.to_string();
                let provided = if f.default.is_some() { " { ... }" } else { "" };
                let body = format!(
                    "{}{provided}",
                    p.signature(&f.sig, &format!("{path}::{name}"))
                );
                (&f.attrs, name, body)
            }
            TraitItem::Const(c) => {
                let name = c.ident.to_string();
                let provided = if c.default.is_some() { " = ..." } else { "" };
                let body = format!("const {path}::{name}: {}{provided}", p.tokens(&c.ty));
                (&c.attrs, name, body)
            }
            TraitItem::Type(t) => {
                let name = t.ident.to_string();
                let mut body = format!("type {path}::{name}{}", p.tokens(&t.generics));
                if !t.bounds.is_empty() {
                    body.push_str(&format!(": {}", p.tokens(&t.bounds)));
                }
                body.push_str(&p.where_clause(&t.generics));
                if let Some((_, ty)) = &t.default {
                    body.push_str(&format!(" = {}", p.tokens(ty)));
                }
                (&t.attrs, name, body)
            }
            TraitItem::Macro(m) => {
                let name = format!(
                    "macro invocation {}!",
                    compact(m.mac.path.to_token_stream())
                );
                self.unresolved(at.member(2, &name), format!("unresolved in {path}: {name}"));
                return;
            }
            _ => return,
        };
        let attrs = read_attrs(attrs);
        if !attrs.excluded {
            let cfg = union(&at.cfg, &attrs.cfg);
            self.push(at.member(0, &name), &cfg, &attrs.shown(at.hidden), body);
        }
    }

    fn emit_derives(&self, attrs: &Attrs, at: &Listing<'_>) {
        for (derived, gate) in &attrs.derives {
            let body = format!("impl {} for {}", at.printer.tokens(derived), at.path);
            let mut shown = attrs.shown(at.hidden);
            shown.retain(|attr| attr == "#[doc(hidden)]");
            shown.push("#[derive]".to_string());
            self.push(at.member(1, &body), &union(&at.cfg, gate), &shown, body);
        }
    }

    /// The impl blocks listed under `target`: its inherent and trait impls; for a trait, also
    /// its impls for types that are not the crate's.
    fn emit_impls(&self, target: &Target, at: &Listing<'_>) {
        for anchor in self.impls.get(target).into_iter().flatten() {
            let Some((Item::Impl(imp), _)) = self.resolver.item(anchor.module, anchor.index) else {
                continue;
            };
            let p = self.printer(anchor.module);
            let cfg = union(&at.cfg, &anchor.cfg);
            // The self type and the trait, with this listing's path for the one listed here.
            let self_args = match &*imp.self_ty {
                Type::Path(ty) => ty.path.segments.last().map(|s| p.tokens(&s.arguments)),
                _ => None,
            }
            .unwrap_or_default();
            let self_text = if anchor.on_self {
                let reference = match &*imp.self_ty {
                    Type::Reference(r) => format!(
                        "&{}{}",
                        r.lifetime
                            .as_ref()
                            .map(|l| format!("{l} "))
                            .unwrap_or_default(),
                        if r.mutability.is_some() { "mut " } else { "" }
                    ),
                    _ => String::new(),
                };
                format!("{reference}{}{self_args}", at.path)
            } else {
                p.tokens(&imp.self_ty)
            };
            let impl_generics = p.tokens(&imp.generics);
            let where_clause = p.where_clause(&imp.generics);
            let Some((negative, trait_path, _)) = &imp.trait_ else {
                // Members exist only where the impl applies: say so unless it is plain
                // `impl<'a, T> Type<'a, T>`.
                let plain = where_clause.is_empty()
                    && imp.generics.params.iter().all(|param| match param {
                        syn::GenericParam::Lifetime(l) => l.bounds.is_empty(),
                        syn::GenericParam::Type(t) => t.bounds.is_empty(),
                        syn::GenericParam::Const(_) => false,
                    })
                    && self_args == impl_generics;
                let context = if plain {
                    String::new()
                } else {
                    format!(" (in impl{impl_generics} {self_text}{where_clause})")
                };
                for item in &imp.items {
                    self.emit_inherent_item(item, at, &p, &cfg, &context);
                }
                continue;
            };
            let trait_found = self.resolver.resolve_path(anchor.module, trait_path);
            let trait_text = if trait_found.iter().any(|f| &f.target == target) {
                let args = trait_path.segments.last().map(|s| p.tokens(&s.arguments));
                format!("{}{}", at.path, args.unwrap_or_default())
            } else {
                p.tokens(trait_path)
            };
            let unsafety = if imp.unsafety.is_some() {
                "unsafe "
            } else {
                ""
            };
            let bang = if negative.is_some() { "!" } else { "" };
            let header = format!(
                "{unsafety}impl{impl_generics} {bang}{trait_text} for {self_text}{where_clause}"
            );
            let key = at.member(1, &header);
            let hidden = if at.hidden {
                vec!["#[doc(hidden)]".to_string()]
            } else {
                Vec::new()
            };
            self.push(key.clone(), &cfg, &hidden, header);
            let qualified = format!("<{self_text} as {trait_text}>");
            for item in &imp.items {
                let (attrs, name, body) = match item {
                    ImplItem::Fn(f) => {
                        let name = f.sig.ident.to_string();
                        let body = p.signature(&f.sig, &format!("{qualified}::{name}"));
                        (&f.attrs, name, body)
                    }
                    ImplItem::Const(c) => {
                        let name = c.ident.to_string();
                        let body = format!("const {qualified}::{name}: {}", p.tokens(&c.ty));
                        (&c.attrs, name, body)
                    }
                    ImplItem::Type(t) => {
                        let name = t.ident.to_string();
                        let body = format!("type {qualified}::{name} = {}", p.tokens(&t.ty));
                        (&t.attrs, name, body)
                    }
                    ImplItem::Macro(m) => {
                        let name = format!(
                            "macro invocation {}!",
                            compact(m.mac.path.to_token_stream())
                        );
                        let mut key = key.clone();
                        key.push((2, name.clone()));
                        self.unresolved(key, format!("unresolved in {qualified}: {name}"));
                        continue;
                    }
                    _ => continue,
                };
                let attrs = read_attrs(attrs);
                if !attrs.excluded {
                    let mut key = key.clone();
                    key.push((0, name));
                    self.push(key, &union(&cfg, &attrs.cfg), &attrs.shown(at.hidden), body);
                }
            }
        }
    }

    fn emit_inherent_item(
        &self,
        item: &ImplItem,
        at: &Listing<'_>,
        p: &Printer<'_>,
        cfg: &BTreeSet<String>,
        context: &str,
    ) {
        let path = &at.path;
        let (attrs, name, body) = match item {
            ImplItem::Fn(f) if is_pub(&f.vis) => {
                let name = f.sig.ident.to_string();
                let body = format!(
                    "pub {}{context}",
                    p.signature(&f.sig, &format!("{path}::{name}"))
                );
                (&f.attrs, name, body)
            }
            ImplItem::Const(c) if is_pub(&c.vis) => {
                let name = c.ident.to_string();
                let body = format!("pub const {path}::{name}: {}{context}", p.tokens(&c.ty));
                (&c.attrs, name, body)
            }
            ImplItem::Type(t) if is_pub(&t.vis) => {
                let name = t.ident.to_string();
                let body = format!("pub type {path}::{name} = {}{context}", p.tokens(&t.ty));
                (&t.attrs, name, body)
            }
            ImplItem::Macro(m) => {
                let name = format!(
                    "macro invocation {}!",
                    compact(m.mac.path.to_token_stream())
                );
                self.unresolved(
                    at.member(2, &name),
                    format!("unresolved in impl {path}: {name}"),
                );
                return;
            }
            _ => return,
        };
        let attrs = read_attrs(attrs);
        if !attrs.excluded {
            let cfg = union(cfg, &attrs.cfg);
            self.push(at.member(0, &name), &cfg, &attrs.shown(at.hidden), body);
        }
    }
}

fn union(a: &BTreeSet<String>, b: &BTreeSet<String>) -> BTreeSet<String> {
    a.union(b).cloned().collect()
}

// ---------------------------------------------------------------------------------------------
// Printing
// ---------------------------------------------------------------------------------------------

/// Prints the tokens of code written in `module`, with each path in them as a user names it
/// ([`Emitter::rename`]); without an emitter, paths stay as written.
struct Printer<'e> {
    emitter: Option<&'e Emitter<'e, 'e>>,
    module: ModId,
}

impl Printer<'_> {
    fn tokens(&self, tokens: &impl ToTokens) -> String {
        let rename = |segments: &[String]| {
            self.emitter
                .and_then(|emitter| emitter.rename(self.module, segments))
        };
        compact_with(tokens.to_token_stream(), &rename)
    }

    /// `<T: Clone>` and its where clause.
    fn generics(&self, generics: &syn::Generics) -> String {
        format!("{}{}", self.tokens(generics), self.where_clause(generics))
    }

    fn where_clause(&self, generics: &syn::Generics) -> String {
        match &generics.where_clause {
            Some(clause) if !clause.predicates.is_empty() => format!(" {}", self.tokens(clause)),
            _ => String::new(),
        }
    }

    /// `(u32, String)` or ` { a: u32 }`: a variant's fields.
    fn fields_shape(&self, fields: &Fields) -> String {
        match fields {
            Fields::Unit => String::new(),
            Fields::Unnamed(unnamed) => {
                let types: Vec<String> =
                    unnamed.unnamed.iter().map(|f| self.tokens(&f.ty)).collect();
                format!("({})", types.join(", "))
            }
            Fields::Named(named) => {
                let fields: Vec<String> = named
                    .named
                    .iter()
                    .map(|f| {
                        let name = f
                            .ident
                            .as_ref()
                            .map(ToString::to_string)
                            .unwrap_or_default();
                        format!("{name}: {}", self.tokens(&f.ty))
                    })
                    .collect();
                format!(" {{ {} }}", fields.join(", "))
            }
        }
    }

    /// `const async unsafe fn path<G>(args) -> Out where …`, with `path` in place of the name.
    /// A parameter's pattern prints as written but without `mut` on its binding (not API).
    fn signature(&self, sig: &Signature, path: &str) -> String {
        let mut out = String::new();
        if sig.constness.is_some() {
            out.push_str("const ");
        }
        if sig.asyncness.is_some() {
            out.push_str("async ");
        }
        if sig.unsafety.is_some() {
            out.push_str("unsafe ");
        }
        if let Some(abi) = &sig.abi {
            out.push_str(&compact(abi.to_token_stream()));
            out.push(' ');
        }
        let mut inputs: Vec<String> = sig
            .inputs
            .iter()
            .map(|arg| match arg {
                FnArg::Typed(typed) => {
                    let mut pat = (*typed.pat).clone();
                    if let Pat::Ident(ident) = &mut pat {
                        ident.mutability = None;
                    }
                    format!(
                        "{}: {}",
                        compact(pat.to_token_stream()),
                        self.tokens(&typed.ty)
                    )
                }
                FnArg::Receiver(receiver) => {
                    let mut receiver = receiver.clone();
                    receiver.attrs.clear();
                    if receiver.reference.is_none() {
                        receiver.mutability = None;
                    }
                    self.tokens(&receiver)
                }
            })
            .collect();
        if sig.variadic.is_some() {
            inputs.push("...".to_string());
        }
        out.push_str(&format!(
            "fn {path}{}({})",
            self.tokens(&sig.generics),
            inputs.join(", ")
        ));
        if let ReturnType::Type(_, ty) = &sig.output {
            out.push_str(&format!(" -> {}", self.tokens(ty)));
        }
        out.push_str(&self.where_clause(&sig.generics));
        out
    }
}

/// Tokens printed the way rustfmt would write a signature: `&'a mut T`, `Vec<u8>`, `a: u32`,
/// `-> X`, `T: A + B`; trailing commas dropped (but not a one-element tuple's).
fn compact(tokens: TokenStream) -> String {
    compact_with(tokens, &|_| None)
}

/// [`compact`], with each path (`a::b::C`, not a keyword, a lifetime, a literal, a parameter
/// being declared `T: …` or an associated type bound `Item = …`) printed as `rename` says.
fn compact_with(tokens: TokenStream, rename: &dyn Fn(&[String]) -> Option<String>) -> String {
    let mut flat = Vec::new();
    flatten(tokens, false, &mut flat);
    let mut out = String::new();
    let mut prev: Option<&Tok> = None;
    let mut at = 0;
    while let Some(tok) = flat.get(at) {
        if prev.is_some_and(|prev| space_between(prev, tok)) {
            out.push(' ');
        }
        let path_start = matches!(tok, Tok::Word(word) if is_path_word(word))
            && !matches!(prev, Some(Tok::Op(_, Role::PathSep | Role::Dot)));
        let mut segments = Vec::new();
        let mut end = at;
        if path_start {
            while let Some(Tok::Word(word)) = flat.get(end) {
                segments.push(word.clone());
                match (flat.get(end + 1), flat.get(end + 2)) {
                    (Some(Tok::Op(sep, _)), Some(Tok::Word(_))) if sep == "::" => end += 2,
                    _ => break,
                }
            }
        }
        let declared = matches!(
            flat.get(end + 1),
            Some(Tok::Op(op, _)) if op == ":" || op == "="
        );
        match (path_start && !declared)
            .then(|| rename(&segments))
            .flatten()
        {
            Some(name) => {
                out.push_str(&name);
                prev = flat.get(end);
                at = end + 1;
            }
            None => {
                match tok {
                    Tok::Word(text) | Tok::Op(text, _) => out.push_str(text),
                    Tok::Open(c) | Tok::Close(c) => out.push(*c),
                }
                prev = Some(tok);
                at += 1;
            }
        }
    }
    out
}

/// An identifier that can start a path (not a keyword, lifetime or literal).
fn is_path_word(word: &str) -> bool {
    const NOT_PATHS: &[&str] = &[
        "_", "as", "async", "await", "const", "dyn", "else", "enum", "extern", "false", "fn",
        "for", "if", "impl", "in", "let", "match", "mod", "move", "mut", "pub", "ref", "return",
        "self", "Self", "static", "struct", "trait", "true", "type", "unsafe", "use", "where",
        "while",
    ];
    let mut chars = word.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || c == '_')
        && !NOT_PATHS.contains(&word)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Separator,
    Colon,
    PathSep,
    AngleOpen,
    AngleClose,
    Dot,
    Prefix,
    Binary,
}

#[derive(Debug)]
enum Tok {
    Word(String),
    Op(String, Role),
    Open(char),
    Close(char),
}

fn flatten(stream: TokenStream, paren: bool, out: &mut Vec<Tok>) {
    let trees: Vec<TokenTree> = stream.into_iter().collect();
    let is_comma = |tree: &TokenTree| matches!(tree, TokenTree::Punct(p) if p.as_char() == ',');
    let commas = trees.iter().filter(|tree| is_comma(tree)).count();
    let mut at = 0;
    while let Some(tree) = trees.get(at) {
        at += 1;
        match tree {
            TokenTree::Group(group) => {
                let (open, close) = match group.delimiter() {
                    Delimiter::Parenthesis => ('(', ')'),
                    Delimiter::Bracket => ('[', ']'),
                    Delimiter::Brace => ('{', '}'),
                    Delimiter::None => {
                        flatten(group.stream(), false, out);
                        continue;
                    }
                };
                out.push(Tok::Open(open));
                flatten(group.stream(), open == '(', out);
                out.push(Tok::Close(close));
            }
            TokenTree::Ident(ident) => out.push(Tok::Word(ident.to_string())),
            TokenTree::Literal(literal) => out.push(Tok::Word(literal.to_string())),
            TokenTree::Punct(punct) => {
                // A lifetime is `'` joined to an identifier.
                if punct.as_char() == '\'' && punct.spacing() == Spacing::Joint {
                    if let Some(TokenTree::Ident(ident)) = trees.get(at) {
                        out.push(Tok::Word(format!("'{ident}")));
                        at += 1;
                        continue;
                    }
                }
                let mut op = punct.as_char().to_string();
                let mut spacing = punct.spacing();
                while spacing == Spacing::Joint {
                    match trees.get(at) {
                        Some(TokenTree::Punct(next)) if next.as_char() != '\'' => {
                            op.push(next.as_char());
                            spacing = next.spacing();
                            at += 1;
                        }
                        _ => break,
                    }
                }
                let role = role_of(&op, out.last());
                out.push(Tok::Op(op, role));
            }
        }
    }
    let trailing_comma = trees.last().is_some_and(is_comma);
    if trailing_comma && !(paren && commas == 1) {
        out.pop();
    }
}

fn role_of(op: &str, prev: Option<&Tok>) -> Role {
    let after_operand = matches!(
        prev,
        Some(Tok::Word(_) | Tok::Close(_) | Tok::Op(_, Role::AngleClose))
    );
    match op {
        "," | ";" => Role::Separator,
        ":" => Role::Colon,
        "::" => Role::PathSep,
        "<" => Role::AngleOpen,
        ">" => Role::AngleClose,
        "." | ".." | "..." | "..=" => Role::Dot,
        "&" | "!" | "?" | "#" | "$" => Role::Prefix,
        "-" | "*" | "&&" if !after_operand => Role::Prefix,
        _ => Role::Binary,
    }
}

/// Words before which `(` is not a call or a `Fn(…)` sugar, and so takes a space.
const KEYWORDS: &[&str] = &[
    "as", "const", "dyn", "else", "for", "if", "impl", "in", "match", "move", "mut", "ref",
    "return", "static", "unsafe", "where", "while",
];

fn space_between(prev: &Tok, cur: &Tok) -> bool {
    use Role::*;
    match (prev, cur) {
        (_, Tok::Close(_)) | (Tok::Open(_), _) => false,
        (_, Tok::Op(_, Separator | Colon | Dot | AngleClose)) => false,
        (Tok::Op(_, Prefix | PathSep | AngleOpen | Dot), _) => false,
        (Tok::Op(_, Binary | Separator | Colon), _) => true,
        (_, Tok::Op(_, Binary)) => true,
        (_, Tok::Op(_, PathSep | AngleOpen)) => false,
        (_, Tok::Op(_, Prefix)) => true,
        (Tok::Word(word), Tok::Open('(')) => KEYWORDS.contains(&word.as_str()),
        (_, Tok::Open('(')) => false,
        (Tok::Close(_), Tok::Open('[')) => false,
        (_, Tok::Open(_)) => true,
        (_, Tok::Word(_)) => true,
    }
}

// ---------------------------------------------------------------------------------------------
// The diff
// ---------------------------------------------------------------------------------------------

/// A unified diff (`-` removed from `old`, `+` added in `new`) with `context` lines around
/// each change.
fn unified_diff(old: &[&str], new: &[&str], context: usize) -> String {
    // Longest common subsequence over what lies between the common prefix and suffix.
    let prefix = old.iter().zip(new).take_while(|(a, b)| a == b).count();
    let suffix = old[prefix..]
        .iter()
        .rev()
        .zip(new[prefix..].iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let a = &old[prefix..old.len() - suffix];
    let b = &new[prefix..new.len() - suffix];
    let width = b.len() + 1;
    let mut lcs = vec![0u32; (a.len() + 1) * width];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i * width + j] = if a[i] == b[j] {
                lcs[(i + 1) * width + j + 1] + 1
            } else {
                lcs[(i + 1) * width + j].max(lcs[i * width + j + 1])
            };
        }
    }
    // Every line of both, tagged: ' ' kept, '-' removed, '+' added.
    let mut ops: Vec<(char, &str)> = old[..prefix].iter().map(|l| (' ', *l)).collect();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            ops.push((' ', a[i]));
            i += 1;
            j += 1;
        } else if i < a.len()
            && (j == b.len() || lcs[(i + 1) * width + j] >= lcs[i * width + j + 1])
        {
            ops.push(('-', a[i]));
            i += 1;
        } else {
            ops.push(('+', b[j]));
            j += 1;
        }
    }
    ops.extend(old[old.len() - suffix..].iter().map(|l| (' ', *l)));

    let changed: Vec<usize> = (0..ops.len()).filter(|&k| ops[k].0 != ' ').collect();
    let mut out = String::new();
    let mut at = 0;
    while at < changed.len() {
        let start = changed[at].saturating_sub(context);
        let mut end = changed[at];
        while at < changed.len() && changed[at] <= end + 2 * context + 1 {
            end = changed[at];
            at += 1;
        }
        let end = (end + context + 1).min(ops.len());
        let old_start = ops[..start].iter().filter(|(t, _)| *t != '+').count();
        let new_start = ops[..start].iter().filter(|(t, _)| *t != '-').count();
        let old_len = ops[start..end].iter().filter(|(t, _)| *t != '+').count();
        let new_len = ops[start..end].iter().filter(|(t, _)| *t != '-').count();
        out.push_str(&format!(
            "@@ -{},{old_len} +{},{new_len} @@\n",
            old_start + 1,
            new_start + 1
        ));
        for (tag, line) in &ops[start..end] {
            out.push_str(&format!("{tag}{line}\n"));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Tests of the parser itself, on a tiny crate in memory
// ---------------------------------------------------------------------------------------------

fn in_memory(files: &[(&str, &str)]) -> Result<Api, String> {
    let map: HashMap<PathBuf, String> = files
        .iter()
        .map(|(path, text)| (PathBuf::from(path), text.to_string()))
        .collect();
    analyze(&map, Path::new("src/lib.rs"), "demo")
}

const DEMO: &[(&str, &str)] = &[
    (
        "src/lib.rs",
        r#"
        //! A crate with every way to be (or not be) public.
        pub mod outer;
        mod private;
        mod kind;
        #[cfg(feature = "extra")]
        pub mod gated;
        #[cfg(test)]
        mod tests;
        #[path = "elsewhere/renamed.rs"]
        pub mod renamed;
        mod cycle {
            pub use super::cycle::*;
            pub use crate::*;
        }

        pub use private::{helper, Inner as Shown};
        pub use private::deep::*;
        pub use async_trait::async_trait;
        pub use outer::Thing as Alias;
        pub use kind::{kind, Kind};
        #[cfg(feature = "extra")]
        pub use gated::Plug;
        pub(crate) use outer::NotPublic;

        #[macro_export]
        macro_rules! shout { () => {}; }
        macro_rules! whisper { () => {}; }
        const _: () = ();

        /// This type is frozen: two numbers, forever.
        #[derive(Clone, Debug)]
        pub struct Root {
            pub a: u32,
            b: u8,
        }

        impl Root {
            #[must_use]
            pub const fn new(mut a: u32) -> Self { Root { a, b: 0 } }
            fn private(&self) {}
            #[cfg(test)]
            pub fn only_in_tests() {}
        }
        "#,
    ),
    (
        "src/outer.rs",
        r#"
        use crate::private::Inner;
        pub struct Thing;
        pub(crate) struct NotPublic;
        pub(in crate::outer) struct AlsoNot;
        mod inner { pub struct Unreachable; }
        pub mod nested {
            #[non_exhaustive]
            #[repr(u8)]
            pub enum Mode { A = 1, B(u32,), C { at: std::time::Duration } }
        }
        pub use self::nested::Mode::B;
        pub type Res<T> = Result<T, Thing>;
        pub static mut COUNTER: u32 = 0;
        #[non_exhaustive]
        pub union Bits { pub word: u32, bytes: [u8; 4] }
        impl From<Thing> for String { fn from(_: Thing) -> String { String::new() } }
        unsafe impl Sync for Thing {}
        impl !Send for Thing {}
        extern "C" { pub fn c_function(x: i32) -> i32; }
        impl<T: Clone + Default> Inner<'_, T> {
            pub fn fresh() -> T { T::default() }
        }
        "#,
    ),
    (
        "src/private.rs",
        r#"
        use std::fmt;
        pub mod deep;

        pub struct Inner<'a, T: Clone> { pub x: &'a [T] }
        pub fn helper<T>(items: impl IntoIterator<Item = T>) -> Option<Vec<T>> where T: Clone, { None }
        impl crate::outer::Thing {
            pub fn from_private(&mut self, n: usize) -> &'static str { "" }
            pub(crate) fn crate_only(&self) {}
        }
        impl<T: Clone> fmt::Display for Inner<'_, T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { Ok(()) }
        }
        "#,
    ),
    (
        "src/private/deep.rs",
        r#"
        pub const DEPTH: usize = 2;
        pub(crate) fn internal() {}
        #[doc(hidden)]
        pub fn secret() {}
        /// This type is frozen:
        /// a yes or a no, nothing else.
        pub enum Open { Yes, No }
        /// This type is frozen:
        pub struct NoReason;
        "#,
    ),
    (
        "src/kind/mod.rs",
        r#"
        pub fn kind() -> Kind { Kind }
        #[non_exhaustive]
        pub struct Kind;
        "#,
    ),
    (
        "src/gated/mod.rs",
        r#"
        #[async_trait::async_trait]
        pub trait Plug: Send + Sync {
            type Output: Clone;
            const LIMIT: u32 = 3;
            async fn go(&self) -> Self::Output;
            fn provided(&self) {}
        }
        impl<F: Fn() + Send + Sync> Plug for F {
            type Output = ();
            async fn go(&self) {}
        }
        "#,
    ),
    (
        "src/elsewhere/renamed.rs",
        r#"
        pub static NAME: &str = "x";
        my_macro! { pub struct Made; }
        "#,
    ),
];

#[test]
fn a_tiny_crate_lists_what_users_can_name_once_per_path() {
    let api = in_memory(DEMO).unwrap_or_else(|error| panic!("{error}"));
    // Not listed: `Unreachable` (private module), `NotPublic`, `AlsoNot`, `internal`,
    // `crate_only` (restricted visibility), `whisper` (not exported), `private` and
    // `only_in_tests` (private, cfg(test)), `Bits::bytes` (private field), `mod tests` (cfg(test),
    // and its file does not exist), `cycle` (private; its globs end).
    let expected = r#"pub struct demo::Alias
pub fn demo::Alias::from_private(&mut self, n: usize) -> &'static str
impl !Send for demo::Alias
impl From<demo::Alias> for String
fn <String as From<demo::Alias>>::from(_: demo::Alias) -> String
unsafe impl Sync for demo::Alias
pub const demo::DEPTH: usize
#[non_exhaustive] pub struct demo::Kind
pub struct demo::NoReason
pub enum demo::Open
pub demo::Open::No
pub demo::Open::Yes
[feature = "extra"] #[async_trait] pub trait demo::Plug: Send + Sync
[feature = "extra"] const demo::Plug::LIMIT: u32 = ...
[feature = "extra"] type demo::Plug::Output: Clone
[feature = "extra"] async fn demo::Plug::go(&self) -> Self::Output
[feature = "extra"] fn demo::Plug::provided(&self) { ... }
[feature = "extra"] impl<F: Fn() + Send + Sync> demo::Plug for F
[feature = "extra"] type <F as demo::Plug>::Output = ()
[feature = "extra"] async fn <F as demo::Plug>::go(&self)
pub struct demo::Root
pub demo::Root::a: u32
#[must_use] pub const fn demo::Root::new(a: u32) -> Self
#[derive] impl Clone for demo::Root
#[derive] impl Debug for demo::Root
pub struct demo::Shown<'a, T: Clone>
pub fn demo::Shown::fresh() -> T (in impl<T: Clone + Default> demo::Shown<'_, T>)
pub demo::Shown::x: &'a [T]
impl<T: Clone> std::fmt::Display for demo::Shown<'_, T>
fn <demo::Shown<'_, T> as std::fmt::Display>::fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result
pub use async_trait::async_trait as demo::async_trait
[feature = "extra"] pub mod demo::gated
[feature = "extra"] #[async_trait] pub trait demo::gated::Plug: Send + Sync
[feature = "extra"] const demo::gated::Plug::LIMIT: u32 = ...
[feature = "extra"] type demo::gated::Plug::Output: Clone
[feature = "extra"] async fn demo::gated::Plug::go(&self) -> Self::Output
[feature = "extra"] fn demo::gated::Plug::provided(&self) { ... }
[feature = "extra"] impl<F: Fn() + Send + Sync> demo::gated::Plug for F
[feature = "extra"] type <F as demo::gated::Plug>::Output = ()
[feature = "extra"] async fn <F as demo::gated::Plug>::go(&self)
pub fn demo::helper<T>(items: impl IntoIterator<Item = T>) -> Option<Vec<T>> where T: Clone
pub fn demo::kind() -> demo::Kind
pub mod demo::outer
pub use demo::outer::nested::Mode::B as demo::outer::B
#[non_exhaustive] pub union demo::outer::Bits
pub demo::outer::Bits::word: u32
pub static mut demo::outer::COUNTER: u32
pub type demo::outer::Res<T> = Result<T, demo::Alias>
pub struct demo::outer::Thing
pub fn demo::outer::Thing::from_private(&mut self, n: usize) -> &'static str
impl !Send for demo::outer::Thing
impl From<demo::Alias> for String
fn <String as From<demo::Alias>>::from(_: demo::Alias) -> String
unsafe impl Sync for demo::outer::Thing
pub mod demo::outer::nested
#[non_exhaustive] #[repr(u8)] pub enum demo::outer::nested::Mode
pub demo::outer::nested::Mode::A = 1
pub demo::outer::nested::Mode::B(u32)
pub demo::outer::nested::Mode::C { at: std::time::Duration }
unresolved in demo::outer: pub items of an extern block
pub mod demo::renamed
pub static demo::renamed::NAME: &str
unresolved in demo::renamed: macro invocation my_macro!
#[doc(hidden)] pub fn demo::secret()
#[macro_export] macro_rules! demo::shout
"#;
    let rendered = api.render();
    if rendered != expected {
        let old: Vec<&str> = expected.lines().collect();
        let new: Vec<&str> = rendered.lines().collect();
        panic!("{}", unified_diff(&old, &new, 2));
    }
}

#[test]
fn structs_and_enums_that_are_neither_non_exhaustive_nor_frozen_are_offenders() {
    let api = in_memory(DEMO).unwrap_or_else(|error| panic!("{error}"));
    // `Root` gives its reason on the line, `Open` on the next one; `NoReason` gives none.
    // `Kind` and `Mode` are `#[non_exhaustive]`; unions are not under the rule.
    assert_eq!(
        api.offenders,
        [
            "demo::Alias (also demo::outer::Thing)",
            "demo::NoReason",
            "demo::Shown",
        ]
    );
}

#[test]
fn a_missing_module_file_or_bad_syntax_is_an_error_not_a_panic() {
    let missing = in_memory(&[("src/lib.rs", "pub mod gone;")]);
    assert!(
        matches!(&missing, Err(e) if e.contains("src/gone.rs") && e.contains("src/gone/mod.rs"))
    );
    let broken = in_memory(&[("src/lib.rs", "pub struct {")]);
    assert!(matches!(&broken, Err(e) if e.contains("src/lib.rs: cannot parse")));
}

#[test]
fn tokens_print_compactly() {
    let cases = [
        (
            "fn f<'a, T: Clone + 'a>(x: &'a mut [T; 4], f: impl Fn(&str) -> Option<u8>,) -> Result<(), Box<dyn std::error::Error + Send>> where T: Default, {}",
            "fn demo::f<'a, T: Clone + 'a>(x: &'a mut [T; 4], f: impl Fn(&str) -> Option<u8>) -> Result<(), Box<dyn std::error::Error + Send>> where T: Default",
        ),
        (
            "async unsafe fn g(mut self: Box<Self>, (a, b): (u8,), _: *const u8) -> <T as Iterator>::Item {}",
            "async unsafe fn demo::g(self: Box<Self>, (a, b): (u8,), _: *const u8) -> <T as Iterator>::Item",
        ),
        (
            "const fn h(&mut self, n: [Option<Limit>; Dimension::ALL.len()]) -> impl Iterator<Item = &'static str> + '_ {}",
            "const fn demo::h(&mut self, n: [Option<Limit>; Dimension::ALL.len()]) -> impl Iterator<Item = &'static str> + '_",
        ),
    ];
    let printer = Printer {
        emitter: None,
        module: ROOT,
    };
    for (source, expected) in cases {
        let parsed: syn::ItemFn =
            syn::parse_str(source).unwrap_or_else(|e| panic!("{source}: {e}"));
        let path = format!("demo::{}", parsed.sig.ident);
        assert_eq!(printer.signature(&parsed.sig, &path), expected);
    }
}

#[test]
fn cfg_predicates_keep_what_a_user_build_can_have() {
    let eval = |source: &str| {
        let meta: Meta = syn::parse_str(source).unwrap_or_else(|e| panic!("{source}: {e}"));
        eval_cfg(&meta)
    };
    assert_eq!(
        eval(r#"feature = "redis""#),
        Cfg::When(r#"feature = "redis""#.into())
    );
    assert_eq!(
        eval(r#"all(feature = "a", not(test))"#),
        Cfg::When(r#"feature = "a""#.into())
    );
    assert_eq!(eval("any(test, doctest)"), Cfg::Never);
    assert_eq!(eval("not(docsrs)"), Cfg::Always);
    assert_eq!(
        eval(r#"any(feature = "a", feature = "b")"#),
        Cfg::When(r#"any(feature = "a", feature = "b")"#.into())
    );
    assert_eq!(
        eval(r#"not(feature = "m")"#),
        Cfg::When(r#"not(feature = "m")"#.into())
    );
}

#[test]
fn the_diff_shows_removed_and_added_lines_with_context() {
    let old = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
    let new = ["a", "b", "c", "D", "e", "f", "g", "h", "i", "j"];
    let diff = unified_diff(&old, &new, 1);
    assert_eq!(
        diff,
        "@@ -3,3 +3,3 @@\n c\n-d\n+D\n e\n@@ -9,1 +9,2 @@\n i\n+j\n"
    );
}
