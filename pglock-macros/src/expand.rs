//! The expansion of `#[pglock::advisory]`, on `proc_macro2` tokens.
//!
//! ```text
//! #[pglock::advisory(side_effect = Skip)]
//! async fn job(db: &Pool) -> Option<u32> { body }
//! ```
//! becomes, in outline (the `__pglock_` locals are hygienic):
//! ```text
//! async fn job(db: &Pool) -> Option<u32> {
//!     let __pglock_lock = ::pglock::__private::lock(concat!(module_path!(), "::job"));
//!     let __pglock_held = ::pglock::__private::Held::skip(
//!         ::pglock::__private::try_acquire(&__pglock_lock, Ok(&(db))).await);
//!     let __pglock_finished = {
//!         let __pglock_held_ref = &__pglock_held;
//!         let __pglock_outcomes = ::pglock::__private::skip_outcomes(); // checks `Option<u32>`
//!         ::pglock::__private::run(&__pglock_lock, __pglock_held_ref, OnLost::Continue,
//!             __pglock_outcomes, async move {
//!                 // `client = c`: let c = __pglock_held_ref.client();
//!                 // (a never-taken `return` that pins the block's type to `Option<u32>`)
//!                 body
//!             }).await
//!     };
//!     ::pglock::__private::finish(__pglock_held, __pglock_finished).await
//! }
//! ```
//! `fencing`, `lease = ttl` and `label = l` append `.fencing()`,
//! `.lease(ttl).auto_renew()` and `.label(::pglock::__private::label(&(l)))` to the
//! builder, and `timeout = t` wraps it in `__private::timeout(lock, &(t))` (a
//! `Duration` or an `Option<Duration>`); none of the guard's options is allowed
//! with `xact`, which has no guard. `crate = path` replaces `::pglock`.
//!
//! The guard stays in `__pglock_held`, in the function's frame, while the body
//! runs, so the body may borrow its connection (`client = …`); `run` scopes the tokio task-local of `pglock::held()` around the body and
//! watch for the lock's loss when asked (`HeldLock::lost`) or told
//! (`on_lost = cancel`). A panic or a dropped future drops the guard, whose `Drop`
//! releases the lock; a normal return (including `return` and `?` in the body,
//! which leave the inner block) awaits the release in `finish`, so the lock is
//! free when the call returns. The borrow of the source ends before the body
//! starts, so the body may move or mutate what `pool = …` borrowed. An `xact`
//! lock needs no release: the body follows the acquisition inline.
//!
//! Exactly one helper per function has a bound on the return type
//! (`raise_outcomes`, `skip_outcomes`, `xact_raise` or `xact_skip`), each a plain
//! function (an `async fn`'s bound would be checked again at its `.await`), and
//! every helper path carries the span of the token it is about, so a type error is
//! reported once, where it belongs.
//!
//! A method of an `#[async_trait]` impl arrives desugared (a plain `fn` returning
//! `Pin<Box<dyn Future<Output = R> + …>>` whose body is `Box::pin(async move {
//! … })`): the same expansion goes inside that async block.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{
    braced, Attribute, Expr, FnArg, GenericParam, Ident, Pat, ReturnType, Signature, Visibility,
};

use crate::args::{default_id, is_argument_like, unknown, Args, SideEffect, Timeout};

/// An `async fn` whose body is kept as tokens: it is not ours to parse, and an IDE
/// mid-edit gives us bodies that do not parse.
struct AdvisoryFn {
    attrs: Vec<Attribute>,
    vis: Visibility,
    sig: Signature,
    inner_attrs: Vec<Attribute>,
    body: TokenStream,
}

impl Parse for AdvisoryFn {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let attrs = input.call(Attribute::parse_outer)?;
        let vis: Visibility = input.parse()?;
        let sig: Signature = input.parse()?;
        let content;
        braced!(content in input);
        let inner_attrs = content.call(Attribute::parse_inner)?;
        let body: TokenStream = content.parse()?;
        Ok(AdvisoryFn {
            attrs,
            vis,
            sig,
            inner_attrs,
            body,
        })
    }
}

/// Expands the attribute; on error, the item as written plus the errors, so that
/// the rest of the crate (and an IDE) still sees the function.
pub fn advisory(args: TokenStream, item: TokenStream) -> TokenStream {
    match expand(args, item.clone()) {
        Ok(tokens) => tokens,
        Err(e) => {
            let mut tokens = item;
            tokens.extend(e.to_compile_error());
            tokens
        }
    }
}

fn expand(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let parsed_args = Args::parse(args);
    let parsed_fn = syn::parse2::<AdvisoryFn>(item).map_err(|e| {
        syn::Error::new(
            e.span(),
            format!("#[pglock::advisory] goes on an `async fn` ({e})"),
        )
    });
    let (args, func) = match (parsed_args, parsed_fn) {
        (Ok(a), Ok(f)) => (a, f),
        (Err(mut a), Err(f)) => {
            a.combine(f);
            return Err(a);
        }
        (Err(e), _) | (_, Err(e)) => return Err(e),
    };
    let desugared = async_trait_body(&func);
    check(&args, &func, desugared.is_some())?;
    Ok(match desugared {
        Some(desugared) => generate_async_trait(&args, func, desugared),
        None => generate(&args, func),
    })
}

/// A method of an `#[async_trait]` impl, as that attribute (applied first, to the
/// impl) leaves it: `fn m(..) -> Pin<Box<dyn Future<Output = R> + Send + '_>> {
/// Box::pin(async move { .. }) }`. The attribute wraps the async block's contents,
/// as `tracing-attributes` does.
struct Desugared {
    /// `R`, the method's output as written.
    output: syn::Type,
    /// The statements before `Box::pin(..)` (none from `async-trait` today).
    before: Vec<syn::Stmt>,
    /// The `async move { .. }` block's contents.
    inner: TokenStream,
}

fn async_trait_body(func: &AdvisoryFn) -> Option<Desugared> {
    if func.sig.asyncness.is_some() {
        return None;
    }
    let output = future_output(&func.sig.output)?;
    let body = func.body.clone();
    let mut stmts = syn::parse2::<syn::Block>(quote!({ #body })).ok()?.stmts;
    let last = stmts.pop()?;
    let syn::Stmt::Expr(Expr::Call(call), None) = last else {
        return None;
    };
    let Expr::Path(callee) = &*call.func else {
        return None;
    };
    let segments: Vec<String> = callee
        .path
        .segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect();
    if !segments.ends_with(&["Box".to_string(), "pin".to_string()]) || call.args.len() != 1 {
        return None;
    }
    let Expr::Async(block) = &call.args[0] else {
        return None;
    };
    block.capture.as_ref()?;
    let inner_stmts = &block.block.stmts;
    Some(Desugared {
        output,
        before: stmts,
        inner: quote!(#(#inner_stmts)*),
    })
}

/// `R` of `-> Pin<Box<dyn Future<Output = R> + …>>`.
fn future_output(output: &ReturnType) -> Option<syn::Type> {
    let ReturnType::Type(_, ty) = output else {
        return None;
    };
    let mut found = None;
    find_output(ty.to_token_stream(), &mut found);
    found
}

fn find_output(tokens: TokenStream, found: &mut Option<syn::Type>) {
    let tokens: Vec<TokenTree> = tokens.into_iter().collect();
    for (i, t) in tokens.iter().enumerate() {
        match t {
            TokenTree::Ident(id) if id == "Output" => {
                let eq =
                    matches!(tokens.get(i + 1), Some(TokenTree::Punct(p)) if p.as_char() == '=');
                if eq && found.is_none() {
                    // The type runs to the `+` or `>` that ends the binding, at depth 0.
                    let mut depth = 0i32;
                    let mut ty = TokenStream::new();
                    for t in &tokens[i + 2..] {
                        if let TokenTree::Punct(p) = t {
                            match p.as_char() {
                                '<' => depth += 1,
                                '>' if depth == 0 => break,
                                '>' => depth -= 1,
                                '+' | ',' if depth == 0 => break,
                                _ => {}
                            }
                        }
                        ty.extend([t.clone()]);
                    }
                    *found = syn::parse2(ty).ok();
                }
            }
            TokenTree::Group(g) => find_output(g.stream(), found),
            _ => {}
        }
    }
}

/// The `#[async_trait]` form: the lock is taken inside the boxed future.
fn generate_async_trait(args: &Args, func: AdvisoryFn, desugared: Desugared) -> TokenStream {
    let Desugared {
        output,
        before,
        inner,
    } = desugared;
    let AdvisoryFn {
        attrs,
        vis,
        sig,
        inner_attrs,
        ..
    } = func;
    let new_body = generate_body(args, &sig, Some(&output), inner);
    quote! {
        #(#attrs)*
        #vis #sig {
            #(#inner_attrs)*
            #(#before)*
            ::std::boxed::Box::pin(async move { #new_body })
        }
    }
}

/// The checks that need both the arguments and the function.
fn check(args: &Args, func: &AdvisoryFn, async_trait: bool) -> syn::Result<()> {
    let mut errors: Vec<syn::Error> = Vec::new();
    let sig = &func.sig;
    if sig.asyncness.is_none() && !async_trait {
        errors.push(not_async(func));
    }
    // A lower-case word in first place that names no parameter is a misspelled
    // argument far more often than a variable in scope.
    if let Some(Expr::Path(p)) = &args.id {
        if let Some(ident) = p.path.get_ident() {
            if is_argument_like(ident) && !has_binding(sig, ident) {
                errors.push(syn::Error::new(
                    ident.span(),
                    format!(
                        "{}; a lock id given as a bare name must be a parameter of `{}`",
                        unknown(ident),
                        sig.ident
                    ),
                ));
            }
        }
    }
    // `#[advisory(shared)] async fn f(shared: &str)`: the word is the flag, and the
    // parameter meant as the id would silently not be.
    if let Some(flag) = &args.first_flag {
        if args.id.is_none() && has_binding(sig, flag) {
            errors.push(syn::Error::new(
                flag.span(),
                format!(
                    "`{flag}` here is the `{flag}` flag, not the parameter `{flag}` of `{}`: \
                     to lock on the parameter, write `id = {flag}` (and add `, {flag}` for the \
                     flag too); to keep the flag with the default id, rename the parameter",
                    sig.ident
                ),
            ));
        }
    }
    if let (Some(shared), Some(_)) = (&args.shared, &args.fencing) {
        errors.push(syn::Error::new(
            shared.span(),
            "`shared` with `fencing` is refused: shared holders run together, and each would \
             get its own token, so storage that rejects lower tokens would reject a live \
             holder; drop `fencing`, or take the lock exclusively",
        ));
    }
    if args.id.is_none() {
        if let Some(e) = no_default_id(sig) {
            errors.push(e);
        }
    }
    if let Some(tx) = &args.xact {
        check_xact(sig, tx, &mut errors);
        if let Some(pool) = &args.pool {
            errors.push(syn::Error::new(
                pool.span(),
                "`pool = …` has no use with `xact = …`: a transaction-level lock is taken in \
                 the transaction; drop one of them",
            ));
        }
        // What comes with a guard has no meaning without one.
        let no_guard = [
            (
                args.fencing.as_ref(),
                "`fencing`",
                ", so no fencing token is issued for it",
            ),
            (
                args.lease.as_ref().map(|(key, _)| key),
                "`lease = …`",
                " to renew, and it ends with its transaction anyway",
            ),
            (
                args.label.as_ref().map(|(key, _)| key),
                "`label = …`",
                " and no connection of its own to label (set `application_name` in the \
                 transaction instead)",
            ),
            (
                args.client.as_ref(),
                "`client = …`",
                " and no connection of its own: query through the transaction",
            ),
            (
                args.on_lost_cancel.as_ref(),
                "`on_lost = cancel`",
                " to watch: it is lost only with its transaction",
            ),
        ];
        for (key, what, why) in no_guard {
            if let Some(key) = key {
                errors.push(syn::Error::new(
                    key.span(),
                    format!(
                        "{what} has no use with `xact = …`: a transaction-level lock has no \
                         guard{why}; drop `xact = …` to take a session lock, or drop \
                         {what}"
                    ),
                ));
            }
        }
    }
    match errors.into_iter().reduce(|mut all, e| {
        all.combine(e);
        all
    }) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The error for a function that is not an `async fn`, saying what would fix it.
fn not_async(func: &AdvisoryFn) -> syn::Error {
    let sig = &func.sig;
    let name = &sig.ident;
    let message = if let Some(c) = &sig.constness {
        return syn::Error::new(
            c.span,
            format!(
                "#[pglock::advisory] cannot go on a `const fn`: it holds a lock while the \
                 function's future runs. Write `async fn {name}` (without `const`)"
            ),
        );
    } else if mentions(func.body.clone(), "block_on") {
        format!(
            "`{name}` is no longer an `async fn` here: an attribute above \
             #[pglock::advisory] (such as #[tokio::test] or #[tokio::main]) has already \
             turned it into a plain fn. Put #[pglock::advisory] first, above that attribute"
        )
    } else if let ReturnType::Type(_, ty) = &sig.output {
        if mentions(ty.to_token_stream(), "Future") {
            format!(
                "#[pglock::advisory] works on `async fn` only, not on a `fn` returning a \
                 future: write `async fn {name}(…) -> T` for `fn {name}(…) -> impl Future<Output \
                 = T>` (in an #[async_trait] impl, put #[async_trait] on the impl and write the \
                 method as `async fn {name}`)"
            )
        } else {
            format!(
                "#[pglock::advisory] works on `async fn` only: the lock is held while the \
                 function's future runs. Write `async fn {name}`"
            )
        }
    } else {
        format!(
            "#[pglock::advisory] works on `async fn` only: the lock is held while the \
             function's future runs. Write `async fn {name}`"
        )
    };
    syn::Error::new(sig.fn_token.span, message)
}

/// Where the default id cannot tell two functions apart: a method (its type is not
/// visible to the attribute, so `Billing::run` and `Shipping::run`, or one trait
/// default method in two impls, would share a lock) and a generic function (every
/// instance would share one).
fn no_default_id(sig: &Signature) -> Option<syn::Error> {
    let name = sig.ident.unraw();
    if let Some(receiver) = sig.receiver() {
        return Some(syn::Error::new(
            receiver.span(),
            format!(
                "a method needs an explicit lock id: the attribute cannot see its type, so the \
                 default (`module_path!()::{name}`) would be shared by every `{name}` method in \
                 the module (and by every impl of a trait default method). Write, with your \
                 type's name: #[pglock::advisory(\"my_app::MyType::{name}\", …)], or an id \
                 from `self` such as #[pglock::advisory(self.lock_name.as_str(), …)]"
            ),
        ));
    }
    let generic = sig
        .generics
        .params
        .iter()
        .find(|p| !matches!(p, GenericParam::Lifetime(_)));
    let impl_arg = sig.inputs.iter().find(|a| match a {
        FnArg::Typed(t) => mentions(t.ty.to_token_stream(), "impl"),
        FnArg::Receiver(_) => false,
    });
    let span = generic
        .map(|g| g.span())
        .or_else(|| impl_arg.map(|a| a.span()))?;
    Some(syn::Error::new(
        span,
        format!(
            "a generic function needs an explicit lock id: with the default \
             (`module_path!()::{name}`) every instance would share one lock. Write \
             #[pglock::advisory(concat!(module_path!(), \"::{name}\"), …)] to share it on \
             purpose, or an id per instance, such as \
             #[pglock::advisory(format!(\"{name}::{{}}\", std::any::type_name::<T>()), …)]"
        ),
    ))
}

/// `xact = tx` must name a binding of a parameter; `xact = self.tx` needs `self`.
fn check_xact(sig: &Signature, tx: &Expr, errors: &mut Vec<syn::Error>) {
    let mut root = tx;
    while let Expr::Field(f) = root {
        root = &f.base;
    }
    let Expr::Path(p) = root else { return };
    let Some(ident) = p.path.get_ident() else {
        return;
    };
    if ident == "self" {
        if sig.receiver().is_none() {
            errors.push(syn::Error::new(
                tx.span(),
                format!("`xact = self.…` needs `{}` to take `self`", sig.ident),
            ));
        }
    } else if !has_binding(sig, ident) {
        errors.push(syn::Error::new(
            ident.span(),
            format!(
                "`xact = {ident}` must name a parameter of `{}` (or a field of `self`: \
                 `xact = self.tx`): the transaction (`&tokio_postgres::Transaction<'_>` or \
                 `&deadpool_postgres::Transaction<'_>`) that the lock is taken in",
                sig.ident
            ),
        ));
    }
}

/// Whether `name` is bound by a parameter's pattern (`name: T`, `Job { name }: Job`,
/// `(tx, n): (…)` …).
fn has_binding(sig: &Signature, name: &Ident) -> bool {
    sig.inputs.iter().any(|arg| match arg {
        FnArg::Typed(t) => binds(&t.pat, name),
        FnArg::Receiver(_) => false,
    })
}

fn binds(pat: &Pat, name: &Ident) -> bool {
    match pat {
        Pat::Ident(p) => p.ident == *name || p.subpat.as_ref().is_some_and(|(_, s)| binds(s, name)),
        Pat::Struct(s) => s.fields.iter().any(|f| binds(&f.pat, name)),
        Pat::TupleStruct(s) => s.elems.iter().any(|p| binds(p, name)),
        Pat::Tuple(t) => t.elems.iter().any(|p| binds(p, name)),
        Pat::Slice(s) => s.elems.iter().any(|p| binds(p, name)),
        Pat::Reference(r) => binds(&r.pat, name),
        Pat::Paren(p) => binds(&p.pat, name),
        Pat::Type(t) => binds(&t.pat, name),
        _ => false,
    }
}

fn generate(args: &Args, func: AdvisoryFn) -> TokenStream {
    let AdvisoryFn {
        attrs,
        vis,
        sig,
        inner_attrs,
        body,
    } = func;
    let new_body = generate_body(args, &sig, None, body);
    quote! {
        #(#attrs)*
        #vis #sig {
            #(#inner_attrs)*
            #new_body
        }
    }
}

/// The new body: take the lock, run `body` under it, release. `output` is the
/// function's output type when the signature does not show it (`#[async_trait]`,
/// whose body already pins its type).
fn generate_body(
    args: &Args,
    sig: &Signature,
    output: Option<&syn::Type>,
    body: TokenStream,
) -> TokenStream {
    let krate = match &args.krate {
        Some(path) => path.to_token_stream(),
        None => quote!(::pglock),
    };
    // The crate's path takes the span of the token each helper call is about, so
    // that a type error points there (and only there).
    let at = |span: Span| respan(quote!(#krate::__private), span);
    let krate_at = |span: Span| respan(krate.clone(), span);
    let private = at(Span::call_site());
    // Errors about the return type point at it (or at the name when there is none).
    let ret_span = match (output, &sig.output) {
        (Some(ty), _) => ty.span(),
        (None, ReturnType::Type(_, ty)) => ty.span(),
        (None, ReturnType::Default) => sig.ident.span(),
    };
    let hygienic = |name: &str| format_ident!("{}", name, span = Span::mixed_site());
    let lock = hygienic("__pglock_lock");
    let held = hygienic("__pglock_held");
    let held_ref = hygienic("__pglock_held_ref");
    let finished = hygienic("__pglock_finished");
    let early = hygienic("__pglock_early_return");
    let fn_name = sig.ident.unraw().to_string();
    // Each helper call, `.await` included, carries the span of the user's token it
    // is about, so that a type error points there, once.
    let new_lock = match &args.id {
        Some(expr) => {
            let private = at(expr.span());
            quote_spanned!(expr.span()=> #private::lock(&(#expr)))
        }
        None => {
            let id = default_id(&fn_name);
            quote!(#private::lock(#id))
        }
    };
    let shared = args.shared.as_ref().map(|_| quote!(.shared()));
    let fencing = args
        .fencing
        .as_ref()
        .map(|key| quote_spanned!(key.span()=> .fencing()));
    // A lease renews itself while the process runs: the body holds no guard to
    // renew it with.
    let lease = args
        .lease
        .as_ref()
        .map(|(_, ttl)| quote!(.lease(#ttl).auto_renew()));
    let label = args.label.as_ref().map(|(_, expr)| {
        let private = at(expr.span());
        quote_spanned!(expr.span()=> .label(#private::label(&(#expr))))
    });
    let mut new_lock = quote!(#new_lock #shared #fencing #lease #label);
    if let Some(t) = &args.timeout {
        let span = match t {
            Timeout::Literal { span, .. } => *span,
            Timeout::Expr(e) => e.span(),
        };
        let private = at(span);
        new_lock = quote_spanned!(span=> #private::timeout(#new_lock, &(#t)));
    }
    let new_lock = quote! {
        let #lock = #new_lock;
    };

    let skip = args.side_effect() == SideEffect::Skip;
    // Exactly one helper per function is generic over the return type with a
    // bound, so a return type that does not fit is reported once, at the return
    // type.
    let new_body = if let Some(tx) = &args.xact {
        let (private, private_ret) = (at(tx.span()), at(ret_span));
        let check = if skip {
            let attempt = quote_spanned!(tx.span()=>
                #private::try_acquire_in(&#lock, #private::transaction(&#tx)).await
            );
            quote_spanned!(ret_span=> #private_ret::xact_skip(&#lock, #attempt))
        } else {
            let attempt = quote_spanned!(tx.span()=>
                #private::acquire_in(&#lock, #private::transaction(&#tx)).await
            );
            quote_spanned!(ret_span=> #private_ret::xact_raise(#attempt))
        };
        // No guard: the lock ends with the transaction. The body follows inline.
        quote! {
            #new_lock
            if let ::core::option::Option::Some(#early) = #check {
                return #early;
            }
            #body
        }
    } else {
        let (source, source_span) = match &args.pool {
            Some(pool) => {
                let krate = krate_at(pool.span());
                (
                    quote_spanned!(pool.span()=> ::core::result::Result::Ok::<_, #krate::Error>(&(#pool))),
                    pool.span(),
                )
            }
            None => (quote!(#private::default_source()), Span::call_site()),
        };
        let private = at(source_span);
        let acquire = match skip {
            true => quote_spanned!(source_span=>
                #private::Held::skip(#private::try_acquire(&#lock, #private::source(#source)).await)
            ),
            false => quote_spanned!(source_span=>
                #private::Held::raise(#private::acquire(&#lock, #private::source(#source)).await)
            ),
        };
        let on_lost = match &args.on_lost_cancel {
            Some(key) => {
                let private = at(key.span());
                quote_spanned!(key.span()=> #private::OnLost::Cancel)
            }
            None => quote!(#private::OnLost::Continue),
        };
        let client = args.client.as_ref().map(|name| {
            let krate = krate_at(name.span());
            quote_spanned!(name.span()=>
                let #name: &#krate::tokio_postgres::Client = #held_ref.client();
            )
        });
        let fake_return = match output {
            Some(_) => TokenStream::new(),
            None => fake_return(&sig.output),
        };
        let body = quote_spanned! {ret_span=>
            async move {
                #client
                #fake_return
                #body
            }
        };
        let private = at(ret_span);
        let outcomes = hygienic("__pglock_outcomes");
        let value_check = match skip {
            true => quote_spanned!(ret_span=> #private::skip_outcomes()),
            false => quote_spanned!(ret_span=> #private::raise_outcomes()),
        };
        let run = quote_spanned!(ret_span=>
            let #outcomes = #value_check;
            #private::run(&#lock, #held_ref, #on_lost, #outcomes, #body).await
        );
        // Every statement carries the span of the token it is about, so that a
        // type error is reported there, once.
        let acquire = quote_spanned!(source_span=> let #held = #acquire;);
        let run = quote_spanned!(ret_span=>
            let #finished = {
                let #held_ref = &#held;
                #run
            };
            #private::finish(#held, #finished).await
        );
        quote! {
            #new_lock
            #acquire
            #run
        }
    };
    new_body
}

/// Pins the inner block's output type to the function's return type, so that `?`
/// and `return` in the body convert as they would in the function itself (the
/// technique of `tracing-attributes`). Left out for `impl Trait` return types,
/// which cannot be written in a `let`.
fn fake_return(output: &ReturnType) -> TokenStream {
    let ty = match output {
        ReturnType::Default => quote!(()),
        ReturnType::Type(_, ty) => {
            if mentions(ty.to_token_stream(), "impl") {
                return TokenStream::new();
            }
            ty.to_token_stream()
        }
    };
    let fake = format_ident!("__pglock_fake_return", span = Span::mixed_site());
    quote! {
        #[allow(
            unknown_lints,
            unreachable_code,
            clippy::diverging_sub_expression,
            clippy::empty_loop,
            clippy::let_unit_value,
            clippy::let_with_type_underscore,
            clippy::needless_return,
            clippy::unreachable
        )]
        if false {
            let #fake: #ty = loop {};
            return #fake;
        }
    }
}

/// `tokens` with every span set to `span`.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut t| {
            if let TokenTree::Group(g) = &t {
                let mut group = proc_macro2::Group::new(g.delimiter(), respan(g.stream(), span));
                group.set_span(span);
                t = TokenTree::Group(group);
            } else {
                t.set_span(span);
            }
            t
        })
        .collect()
}

fn mentions(tokens: TokenStream, word: &str) -> bool {
    tokens.into_iter().any(|t| match t {
        TokenTree::Ident(i) => i == word,
        TokenTree::Group(g) => mentions(g.stream(), word),
        _ => false,
    })
}
