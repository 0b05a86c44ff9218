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
//!     let __pglock_acquired = ::pglock::__private::try_acquire(&__pglock_lock, Ok(&(db))).await;
//!     ::pglock::__private::run_skip(&__pglock_lock, __pglock_acquired, async move {
//!         // (a never-taken `return` that pins the block's type to `Option<u32>`)
//!         body
//!     })
//!     .await
//! }
//! ```
//! `fencing`, `lease = ttl` and `label = l` append `.fencing()`,
//! `.lease(ttl).auto_renew()` and `.label(::pglock::__private::label(&(l)))` to the
//! builder; none is allowed with `xact`, which has no guard.
//! `run_skip`/`run_raise` hold the guard while the body runs (with a tokio
//! task-local describing it, `pglock::held()`, scoped around the body), so a panic
//! or a dropped future releases the lock through the guard's `Drop`; a normal return
//! (including `return` and `?` in the body, which leave the inner block) awaits the
//! release, so the lock is free when the call returns. The borrow of the source
//! ends before the body starts, so the body may move or mutate what `pool = …`
//! borrowed. An `xact` lock needs no release: the body follows the acquisition
//! inline. Exactly one helper per function is generic over the return type, so a
//! return type that does not fit is reported once, at the return type.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{braced, Attribute, Expr, FnArg, Ident, Pat, ReturnType, Signature, Visibility};

use crate::args::{default_id, is_argument_like, unknown, Args, SideEffect};

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
    check(&args, &func)?;
    Ok(generate(&args, func))
}

/// The checks that need both the arguments and the function.
fn check(args: &Args, func: &AdvisoryFn) -> syn::Result<()> {
    let mut errors: Vec<syn::Error> = Vec::new();
    let sig = &func.sig;
    if sig.asyncness.is_none() {
        errors.push(syn::Error::new(
            sig.fn_token.span,
            format!(
                "#[pglock::advisory] works on `async fn` only: the lock is held while the \
                 function's future runs. Write `async fn {}`",
                sig.ident
            ),
        ));
    }
    // A lower-case word in first place that names no parameter is a misspelled
    // argument far more often than a variable in scope.
    if let Some(Expr::Path(p)) = &args.id {
        if let Some(ident) = p.path.get_ident() {
            if is_argument_like(ident) && !has_parameter(sig, ident) {
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
    if let Some(tx) = &args.xact {
        if !has_parameter(sig, tx) {
            errors.push(syn::Error::new(
                tx.span(),
                format!(
                    "`xact = {tx}` must name a parameter of `{}`: the transaction \
                     (`&tokio_postgres::Transaction<'_>` or `&deadpool_postgres::Transaction<'_>`) \
                     that the lock is taken in",
                    sig.ident
                ),
            ));
        }
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

/// Whether `name` is a parameter bound by a plain identifier pattern.
fn has_parameter(sig: &Signature, name: &Ident) -> bool {
    sig.inputs.iter().any(|arg| match arg {
        FnArg::Typed(t) => matches!(&*t.pat, Pat::Ident(p) if p.ident == *name),
        FnArg::Receiver(_) => false,
    })
}

fn generate(args: &Args, func: AdvisoryFn) -> TokenStream {
    let AdvisoryFn {
        attrs,
        vis,
        sig,
        inner_attrs,
        body,
    } = func;
    // Errors about the return type point at it (or at the name when there is none).
    let ret_span = match &sig.output {
        ReturnType::Type(_, ty) => ty.span(),
        ReturnType::Default => sig.ident.span(),
    };
    let hygienic = |name: &str| format_ident!("{}", name, span = Span::mixed_site());
    let lock = hygienic("__pglock_lock");
    let acquired = hygienic("__pglock_acquired");
    let early = hygienic("__pglock_early_return");
    let fn_name = sig.ident.unraw().to_string();
    // Each helper call, `.await` included, carries the span of the user's token it
    // is about, so that a type error points there, once.
    let new_lock = match &args.id {
        Some(expr) => quote_spanned!(expr.span()=> ::pglock::__private::lock(&(#expr))),
        None => {
            let id = default_id(&fn_name);
            quote!(::pglock::__private::lock(#id))
        }
    };
    let shared = args.shared.then(|| quote!(.shared()));
    let timeout = args.timeout.as_ref().map(|t| quote!(.timeout(#t)));
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
    let label = args.label.as_ref().map(
        |(_, expr)| quote_spanned!(expr.span()=> .label(::pglock::__private::label(&(#expr)))),
    );
    let new_lock = quote! {
        let #lock = #new_lock #shared #timeout #fencing #lease #label;
    };

    let skip = args.side_effect() == SideEffect::Skip;
    // Exactly one helper per function is generic over the return type, so a return
    // type that does not fit is reported once, at the return type.
    let new_body = if let Some(tx) = &args.xact {
        let check = if skip {
            let attempt = quote_spanned!(tx.span()=>
                ::pglock::__private::try_acquire_in(&#lock, &#tx).await
            );
            quote_spanned!(ret_span=> ::pglock::__private::xact_skip(&#lock, #attempt))
        } else {
            let attempt = quote_spanned!(tx.span()=>
                ::pglock::__private::acquire_in(&#lock, &#tx).await
            );
            quote_spanned!(ret_span=> ::pglock::__private::xact_raise(#attempt))
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
            Some(pool) => (
                quote_spanned!(pool.span()=> ::core::result::Result::Ok::<_, ::pglock::Error>(&(#pool))),
                pool.span(),
            ),
            None => (
                quote!(::pglock::__private::default_source()),
                Span::call_site(),
            ),
        };
        let acquire = match skip {
            true => quote_spanned!(source_span=>
                ::pglock::__private::try_acquire(&#lock, #source).await
            ),
            false => quote_spanned!(source_span=>
                ::pglock::__private::acquire(&#lock, #source).await
            ),
        };
        let fake_return = fake_return(&sig.output);
        let body = quote_spanned! {ret_span=>
            async move {
                #fake_return
                #body
            }
        };
        let run = match skip {
            true => {
                quote_spanned!(ret_span=> ::pglock::__private::run_skip(&#lock, #acquired, #body).await)
            }
            false => {
                quote_spanned!(ret_span=> ::pglock::__private::run_raise(#acquired, #body).await)
            }
        };
        quote! {
            #new_lock
            let #acquired = #acquire;
            #run
        }
    };

    quote! {
        #(#attrs)*
        #vis #sig {
            #(#inner_attrs)*
            #new_body
        }
    }
}

/// Pins the inner block's output type to the function's return type, so that `?`
/// and `return` in the body convert as they would in the function itself (the
/// technique of `tracing-attributes`). Left out for `impl Trait` return types,
/// which cannot be written in a `let`.
fn fake_return(output: &ReturnType) -> TokenStream {
    let ty = match output {
        ReturnType::Default => quote!(()),
        ReturnType::Type(_, ty) => {
            if mentions_impl(ty.to_token_stream()) {
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

fn mentions_impl(tokens: TokenStream) -> bool {
    tokens.into_iter().any(|t| match t {
        TokenTree::Ident(i) => i == "impl",
        TokenTree::Group(g) => mentions_impl(g.stream()),
        _ => false,
    })
}
