//! Parsing the attribute's arguments: `#[advisory("id", timeout = "2s", shared, …)]`.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, ExprPath, Ident, Lit, LitStr, Token};

/// Every named argument, for "expected one of" messages.
const ACCEPTED: &str =
    "a lock id (\"name\" or an expression, or `id = …`), `timeout = …`, `shared`, \
     `xact = <parameter>`, `side_effect = Raise | Skip`, `pool = …`, `fencing`, `lease = …`, \
     `label = …`, `client = <name>`, `on_lost = cancel`, `crate = <path>`";

/// The shortest lease accepted, in nanoseconds: `pglock::__private::LEASE_FLOOR`.
const LEASE_FLOOR_NANOS: u128 = 1_000_000_000;

/// PostgreSQL's `lock_timeout` and `idle_session_timeout` are `int`s of
/// milliseconds.
const MAX_TIMEOUT_MS: u128 = i32::MAX as u128;

/// Which duration argument a value is for: the messages differ.
#[derive(Clone, Copy, PartialEq, Eq)]
enum DurationArg {
    Timeout,
    Lease,
}

/// What to do when the lock is busy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SideEffect {
    /// Return `Err(E::from(pglock::Error))` without running the body.
    Raise,
    /// Return the "skipped" value without running the body.
    Skip,
}

/// A timeout: a literal checked at compile time, or an expression of type
/// `Duration` evaluated at each call.
pub(crate) enum Timeout {
    Literal { nanos: u64, span: Span },
    Expr(Box<Expr>),
}

impl ToTokens for Timeout {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        match self {
            Timeout::Literal { nanos, span } => {
                tokens.extend(quote_spanned!(*span=> ::core::time::Duration::from_nanos(#nanos)))
            }
            Timeout::Expr(e) => e.to_tokens(tokens),
        }
    }
}

/// The parsed arguments.
#[derive(Default)]
pub(crate) struct Args {
    pub(crate) id: Option<Expr>,
    /// `shared` or `fencing` written in first place, where a parameter of that
    /// name would have been the id.
    pub(crate) first_flag: Option<Ident>,
    pub(crate) timeout: Option<Timeout>,
    /// `shared`, as written.
    pub(crate) shared: Option<Ident>,
    /// `xact = tx` or `xact = self.tx`.
    pub(crate) xact: Option<Expr>,
    /// `client = db`: the name the lock's connection is bound to in the body.
    pub(crate) client: Option<Ident>,
    /// `on_lost = cancel`, as written.
    pub(crate) on_lost_cancel: Option<Ident>,
    /// `crate = path`: where `pglock` is (a renamed dependency, a re-export).
    pub(crate) krate: Option<Expr>,
    pub(crate) side_effect: Option<SideEffect>,
    pub(crate) pool: Option<Expr>,
    /// `fencing`, as written.
    pub(crate) fencing: Option<Ident>,
    /// `lease = …`: the key as written and the time-to-live.
    pub(crate) lease: Option<(Ident, Timeout)>,
    /// `label = …`: the key as written and the expression.
    pub(crate) label: Option<(Ident, Expr)>,
}

/// One comma-separated argument as written.
enum RawArg {
    Positional(Expr),
    Flag(Ident),
    Named { key: Ident, value: Expr },
}

impl Parse for RawArg {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        if input.peek(Token![crate]) && input.peek2(Token![=]) && !input.peek2(Token![==]) {
            let token: Token![crate] = input.parse()?;
            let _: Token![=] = input.parse()?;
            let key = Ident::new("crate", token.span);
            if input.is_empty() || input.peek(Token![,]) {
                return Err(syn::Error::new(
                    key.span(),
                    "`crate =` needs a path, such as `crate = my_pglock`",
                ));
            }
            let value: Expr = input.parse()?;
            return Ok(RawArg::Named { key, value });
        }
        if input.peek(Ident) && input.peek2(Token![=]) && !input.peek2(Token![==]) {
            let key: Ident = input.parse()?;
            let _: Token![=] = input.parse()?;
            if input.is_empty() || input.peek(Token![,]) {
                return Err(syn::Error::new(
                    key.span(),
                    format!("`{key} =` needs a value"),
                ));
            }
            let value: Expr = input.parse()?;
            return Ok(RawArg::Named { key, value });
        }
        if input.peek(Ident) && (input.peek2(Token![,]) || peek2_is_end(input)) {
            let fork = input.fork();
            let ident: Ident = fork.parse()?;
            if is_argument_like(&ident) {
                input.parse::<Ident>()?;
                return Ok(RawArg::Flag(ident));
            }
        }
        Ok(RawArg::Positional(input.parse()?))
    }
}

fn peek2_is_end(input: ParseStream<'_>) -> bool {
    let fork = input.fork();
    fork.parse::<Ident>().is_ok() && fork.is_empty()
}

/// A bare lower-case identifier reads as a (possibly misspelled) argument name.
/// In first place it may also be a parameter used as the lock id; the function
/// check in `expand` sorts that out.
pub(crate) fn is_argument_like(ident: &Ident) -> bool {
    let s = ident.to_string();
    s.chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Every argument name.
const KEYS: &[&str] = &[
    "shared",
    "timeout",
    "xact",
    "side_effect",
    "pool",
    "fencing",
    "lease",
    "label",
];

impl Args {
    /// Parses the attribute's argument tokens; every problem found is reported.
    pub(crate) fn parse(tokens: TokenStream) -> syn::Result<Args> {
        let raw =
            syn::parse::Parser::parse2(Punctuated::<RawArg, Token![,]>::parse_terminated, tokens)?;
        let mut args = Args::default();
        let mut errors: Option<syn::Error> = None;
        let mut push = |e: syn::Error| match &mut errors {
            Some(all) => all.combine(e),
            None => errors = Some(e),
        };
        let mut seen: Vec<String> = Vec::new();
        for (index, arg) in raw.into_iter().enumerate() {
            match arg {
                RawArg::Positional(expr) => {
                    if let Some(side_effect) = side_effect_word(&expr) {
                        push(syn::Error::new(
                            expr.span(),
                            format!(
                                "`{side_effect}` alone is not an argument: write \
                                 `side_effect = {side_effect}`"
                            ),
                        ));
                    } else if index != 0 {
                        push(syn::Error::new(
                            expr.span(),
                            "the lock id must be the first argument: \
                             #[pglock::advisory(\"name\", timeout = …)], or give it as \
                             `id = …` anywhere",
                        ));
                    } else if let Err(e) = check_id(&expr) {
                        push(e);
                    } else {
                        args.id = Some(expr);
                    }
                }
                RawArg::Flag(ident)
                    if index == 0 && !KEYS.contains(&ident.to_string().as_str()) =>
                {
                    // A parameter (or a misspelled argument: `expand::check` tells which).
                    args.id = Some(syn::parse_quote!(#ident));
                }
                RawArg::Flag(ident) => {
                    let key = ident.to_string();
                    if let Err(e) = check_duplicate(&mut seen, &ident) {
                        push(e);
                        continue;
                    }
                    if index == 0 && (key == "shared" || key == "fencing") {
                        args.first_flag = Some(ident.clone());
                    }
                    match key.as_str() {
                        "shared" => args.shared = Some(ident),
                        "fencing" => args.fencing = Some(ident),
                        "timeout" | "xact" | "side_effect" | "pool" | "lease" | "label" => {
                            push(syn::Error::new(
                                ident.span(),
                                format!("`{key}` needs a value: {}", example(&key)),
                            ))
                        }
                        _ => push(unknown(&ident)),
                    }
                }
                RawArg::Named { key, value } => {
                    if let Err(e) = check_duplicate(&mut seen, &key) {
                        push(e);
                        continue;
                    }
                    let result = match key.to_string().as_str() {
                        "timeout" => parse_duration(value, DurationArg::Timeout)
                            .map(|t| args.timeout = Some(t)),
                        "lease" => parse_duration(value, DurationArg::Lease)
                            .map(|t| args.lease = Some((key.clone(), t))),
                        "label" => {
                            args.label = Some((key.clone(), value));
                            Ok(())
                        }
                        "xact" => parse_xact(&value).map(|()| args.xact = Some(value)),
                        "client" => {
                            parse_ident(&value, "client", "the name to give the lock's connection")
                                .map(|i| args.client = Some(i))
                        }
                        "on_lost" => parse_on_lost(&value).map(|i| args.on_lost_cancel = i),
                        "crate" => match &value {
                            Expr::Path(p) if p.attrs.is_empty() && p.qself.is_none() => {
                                args.krate = Some(value.clone());
                                Ok(())
                            }
                            _ => Err(syn::Error::new(
                                value.span(),
                                "`crate = …` takes the path of the pglock crate, such as \
                                 `crate = my_pglock` for a dependency renamed in Cargo.toml",
                            )),
                        },
                        "id" => {
                            if args.id.is_some() {
                                Err(syn::Error::new(
                                    key.span(),
                                    "the lock id is given twice: once in first place and once \
                                     as `id = …`; keep one",
                                ))
                            } else {
                                check_id(&value).map(|()| args.id = Some(value))
                            }
                        }
                        "side_effect" => {
                            parse_side_effect(&value).map(|s| args.side_effect = Some(s))
                        }
                        "pool" => {
                            args.pool = Some(value);
                            Ok(())
                        }
                        "shared" => Err(syn::Error::new(
                            key.span(),
                            "`shared` takes no value: write `shared` (leave it out for an \
                             exclusive lock)",
                        )),
                        "fencing" => Err(syn::Error::new(
                            key.span(),
                            "`fencing` takes no value: write `fencing` (leave it out for no \
                             fencing token)",
                        )),
                        "name" => Err(syn::Error::new(
                            key.span(),
                            "give the lock id as the first argument, without a key \
                             (#[pglock::advisory(\"billing.nightly\")]), or as `id = …`",
                        )),
                        _ => Err(unknown(&key)),
                    };
                    if let Err(e) = result {
                        push(e);
                    }
                }
            }
        }
        match errors {
            Some(e) => Err(e),
            None => Ok(args),
        }
    }

    /// The side effect, Raise unless given.
    pub(crate) fn side_effect(&self) -> SideEffect {
        self.side_effect.unwrap_or(SideEffect::Raise)
    }
}

fn example(key: &str) -> &'static str {
    match key {
        "timeout" => "`timeout = \"2s\"` or `timeout = Duration::from_millis(250)`",
        "xact" => "`xact = tx`, naming the function's transaction parameter",
        "side_effect" => "`side_effect = Raise` or `side_effect = Skip`",
        "lease" => "`lease = \"30s\"` or `lease = Duration::from_secs(30)`",
        "label" => {
            "`label = \"worker-7\"` or any `&str`/`String` expression, such as \
                    `label = self.worker_id.as_str()`"
        }
        "client" => "`client = db`, naming the `&tokio_postgres::Client` the body gets",
        "on_lost" => "`on_lost = cancel`",
        "id" => "`id = \"billing.nightly\"` or `id = <expression>`",
        _ => "`pool = &self.pool`, or any expression giving a pool or session",
    }
}

pub(crate) fn unknown(key: &Ident) -> syn::Error {
    syn::Error::new(
        key.span(),
        format!("unknown argument `{key}`, expected one of: {ACCEPTED}"),
    )
}

fn check_duplicate(seen: &mut Vec<String>, key: &Ident) -> syn::Result<()> {
    let name = key.to_string();
    if seen.contains(&name) {
        return Err(syn::Error::new(
            key.span(),
            format!("duplicate argument `{name}`: give it once"),
        ));
    }
    seen.push(name);
    Ok(())
}

/// A lock id: a non-empty string literal, or any other expression (checked by the
/// compiler where it is used).
fn check_id(expr: &Expr) -> syn::Result<()> {
    if let Expr::Lit(ExprLit {
        lit: Lit::Str(s), ..
    }) = expr
    {
        if s.value().is_empty() {
            return Err(syn::Error::new(s.span(), "a lock name must not be empty"));
        }
    }
    Ok(())
}

fn parse_ident(value: &Expr, key: &str, what: &str) -> syn::Result<Ident> {
    if let Expr::Path(ExprPath {
        path,
        qself: None,
        attrs,
    }) = value
    {
        if attrs.is_empty() {
            if let Some(ident) = path.get_ident() {
                return Ok(ident.clone());
            }
        }
    }
    Err(syn::Error::new(
        value.span(),
        format!("`{key} = …` takes the name of {what}, such as `{key} = tx`"),
    ))
}

/// `Skip` or `Raise` written as a bare word.
fn side_effect_word(expr: &Expr) -> Option<String> {
    let Expr::Path(p) = expr else { return None };
    let ident = p.path.get_ident()?.to_string();
    (ident == "Skip" || ident == "Raise").then_some(ident)
}

/// `xact = tx` (a parameter) or `xact = self.tx` (a field of the receiver).
fn parse_xact(value: &Expr) -> syn::Result<()> {
    let mut e = value;
    while let Expr::Field(f) = e {
        e = &f.base;
    }
    match e {
        Expr::Path(p)
            if p.attrs.is_empty() && p.qself.is_none() && p.path.get_ident().is_some() =>
        {
            if !std::ptr::eq(e, value) && !p.path.is_ident("self") {
                return Err(syn::Error::new(
                    value.span(),
                    "`xact = …` takes a parameter (`xact = tx`) or a field of `self` \
                     (`xact = self.tx`)",
                ));
            }
            Ok(())
        }
        _ => Err(syn::Error::new(
            value.span(),
            "`xact = …` takes the name of the transaction parameter (`xact = tx`) or a \
             field of `self` (`xact = self.tx`)",
        )),
    }
}

fn parse_on_lost(value: &Expr) -> syn::Result<Option<Ident>> {
    match parse_ident(value, "on_lost", "what to do") {
        Ok(i) if i == "cancel" => Ok(Some(i)),
        _ => Err(syn::Error::new(
            value.span(),
            "expected `on_lost = cancel` (drop the body when the lock is lost and return the \
             lost error); without it the body runs on and can watch \
             `pglock::held().unwrap().lost()`",
        )),
    }
}

fn parse_side_effect(value: &Expr) -> syn::Result<SideEffect> {
    let expected = "expected `Raise` (the default: return an error when the lock is busy) \
                    or `Skip` (return without running the function)";
    let Ok(ident) = parse_ident(value, "side_effect", "a side effect") else {
        return Err(syn::Error::new(value.span(), expected));
    };
    match ident.to_string().as_str() {
        "Raise" => Ok(SideEffect::Raise),
        "Skip" => Ok(SideEffect::Skip),
        "Return" => Err(syn::Error::new(
            ident.span(),
            "`side_effect = Return` has no meaning on a function: the function cannot hand \
             back a lock it does not hold. Use `side_effect = Skip` (the body is not run and \
             the function returns `None`/`()`), `side_effect = Raise` (returns an error), or \
             `pglock::advisory(..).try_acquire(&pool)` for `Ok(None)` in your own code",
        )),
        _ => Err(syn::Error::new(ident.span(), expected)),
    }
}

fn parse_duration(value: Expr, what: DurationArg) -> syn::Result<Timeout> {
    match &value {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => parse_duration_literal(s, what),
        Expr::Lit(ExprLit {
            lit: lit @ (Lit::Int(_) | Lit::Float(_)),
            ..
        }) => {
            let n = match lit {
                Lit::Int(i) => i.base10_digits().to_string(),
                Lit::Float(f) => f.base10_digits().to_string(),
                _ => unreachable!("matched above"),
            };
            let (a, key) = match what {
                DurationArg::Timeout => ("a timeout", "timeout"),
                DurationArg::Lease => ("a lease", "lease"),
            };
            Err(syn::Error::new(
                lit.span(),
                format!(
                    "{a} needs a unit: write `{key} = \"{n}s\"` (or \"{n}ms\"), \
                     or a `Duration` such as `Duration::from_secs({n})`"
                ),
            ))
        }
        Expr::Lit(ExprLit { lit, .. }) => Err(syn::Error::new(
            lit.span(),
            match what {
                DurationArg::Timeout => {
                    "expected a timeout such as \"250ms\", \"2s\" or \"0s\", or a `Duration` \
                     expression"
                }
                DurationArg::Lease => {
                    "expected a lease time-to-live such as \"500ms\", \"30s\" or \"1m\", or a \
                     `Duration` expression"
                }
            },
        )),
        _ => Ok(Timeout::Expr(Box::new(value))),
    }
}

/// `"250ms"`, `"2s"`, `"1.5s"`, `"1m30s"`, `"0s"`: numbers, each followed by a unit
/// among `ns`, `us`, `ms`, `s`, `m`, `h`.
fn parse_duration_literal(lit: &LitStr, what: DurationArg) -> syn::Result<Timeout> {
    let text = lit.value();
    let nanos = duration_nanos(&text).map_err(|why| {
        syn::Error::new(
            lit.span(),
            match what {
                DurationArg::Timeout => format!(
                    "invalid timeout {text:?}: {why}; write a number followed by a unit \
                     (ns, us, ms, s, m, h), such as \"250ms\", \"2s\", \"1m30s\" or \"0s\" \
                     (try once), or give a `Duration` expression"
                ),
                DurationArg::Lease => format!(
                    "invalid lease {text:?}: {why}; write a number followed by a unit \
                     (ns, us, ms, s, m, h), such as \"500ms\", \"30s\" or \"1m\", or give \
                     a `Duration` expression"
                ),
            },
        )
    })?;
    if what == DurationArg::Lease && nanos == 0 {
        return Err(syn::Error::new(
            lit.span(),
            format!(
                "a lease of {text:?} would expire at once: give a time-to-live of at least \
                 1ms, such as \"30s\" (the lease is renewed every third of it)"
            ),
        ));
    }
    if nanos.div_ceil(1_000_000) > MAX_TIMEOUT_MS {
        return Err(syn::Error::new(
            lit.span(),
            match what {
                DurationArg::Timeout => format!(
                    "timeout {text:?} is longer than PostgreSQL's lock_timeout allows \
                     (2147483647 ms, about 24.8 days); leave the timeout out to wait until \
                     the lock is granted"
                ),
                DurationArg::Lease => format!(
                    "lease {text:?} is longer than PostgreSQL's idle_session_timeout allows \
                     (2147483647 ms, about 24.8 days)"
                ),
            },
        ));
    }
    if what == DurationArg::Lease && nanos < LEASE_FLOOR_NANOS {
        return Err(syn::Error::new(
            lit.span(),
            format!(
                "lease {text:?} is shorter than the 1s floor: renewed every third of its \
                 time-to-live, a shorter lease can expire under ordinary load and leave the \
                 body running without the lock; write `lease = \"1s\"` or more"
            ),
        ));
    }
    Ok(Timeout::Literal {
        nanos: nanos as u64,
        span: lit.span(),
    })
}

fn duration_nanos(text: &str) -> Result<u128, &'static str> {
    let s = text.trim();
    if s.is_empty() {
        return Err("it is empty");
    }
    let mut rest = s;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if number_len == 0 {
            return Err("expected a number");
        }
        let (number, tail) = rest.split_at(number_len);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let per_unit: u128 = match unit.trim() {
            "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" | "min" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err("the number has no unit"),
            _ => return Err("unknown unit"),
        };
        total = total
            .checked_add(scaled(number, per_unit)?)
            .ok_or("it is too large")?;
        rest = tail.trim_start();
    }
    Ok(total)
}

/// `number` (digits, optionally with a fraction) times `per_unit` nanoseconds,
/// rounded up to a whole nanosecond.
fn scaled(number: &str, per_unit: u128) -> Result<u128, &'static str> {
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if int.is_empty() && frac.is_empty() || frac.contains('.') {
        return Err("malformed number");
    }
    let int: u128 = match int {
        "" => 0,
        _ => int.parse().map_err(|_| "malformed number")?,
    };
    let mut nanos = int.checked_mul(per_unit).ok_or("it is too large")?;
    if !frac.is_empty() {
        if frac.len() > 18 {
            return Err("too many decimals");
        }
        let f: u128 = frac.parse().map_err(|_| "malformed number")?;
        let scale = 10u128.pow(frac.len() as u32);
        nanos = nanos
            .checked_add((f * per_unit).div_ceil(scale))
            .ok_or("it is too large")?;
    }
    Ok(nanos)
}

/// The tokens of a default id: `concat!(module_path!(), "::", "<fn name>")`.
pub(crate) fn default_id(fn_name: &str) -> TokenStream {
    let suffix = format!("::{fn_name}");
    quote!(::core::concat!(::core::module_path!(), #suffix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_literals() {
        assert_eq!(duration_nanos("0s"), Ok(0));
        assert_eq!(duration_nanos("250ms"), Ok(250_000_000));
        assert_eq!(duration_nanos("2s"), Ok(2_000_000_000));
        assert_eq!(duration_nanos("1.5s"), Ok(1_500_000_000));
        assert_eq!(duration_nanos("1m30s"), Ok(90_000_000_000));
        assert_eq!(duration_nanos("1m 30s"), Ok(90_000_000_000));
        assert_eq!(duration_nanos("10 us"), Ok(10_000));
        assert_eq!(duration_nanos("2h"), Ok(7_200_000_000_000));
        assert!(duration_nanos("").is_err());
        assert!(duration_nanos("5").is_err());
        assert!(duration_nanos("s").is_err());
        assert!(duration_nanos("2 seconds").is_err());
        assert!(duration_nanos("1..2s").is_err());
        assert!(duration_nanos("-1s").is_err());
    }

    #[test]
    fn arguments() {
        let args = Args::parse(quote!("a.b", timeout = "2s", shared, side_effect = Skip)).unwrap();
        assert!(
            args.id.is_some()
                && args.shared.is_some()
                && args.side_effect == Some(SideEffect::Skip)
        );
        assert!(Args::parse(quote!(shared, shared)).is_err());
        assert!(Args::parse(quote!(timeot = "2s")).is_err());
        assert!(Args::parse(quote!(side_effect = Return)).is_err());
        assert!(Args::parse(quote!(shared, "late")).is_err());
        assert!(Args::parse(quote!(LOCK_ID, pool = &self.pool))
            .unwrap()
            .id
            .is_some());
        assert!(Args::parse(quote!(name)).unwrap().id.is_some());
        assert!(Args::parse(quote!(shared, sharde)).is_err());
        assert!(Args::parse(quote!()).unwrap().id.is_none());
    }

    #[test]
    fn named_id_client_on_lost_crate() {
        let args = Args::parse(quote!(
            id = shared,
            shared,
            client = db,
            on_lost = cancel,
            crate = my_lock
        ))
        .unwrap();
        assert!(args.id.is_some() && args.shared.is_some() && args.first_flag.is_none());
        assert!(args.client.is_some() && args.on_lost_cancel.is_some() && args.krate.is_some());
        assert!(Args::parse(quote!(shared)).unwrap().first_flag.is_some());
        assert!(Args::parse(quote!("a", id = "b")).is_err());
        assert!(Args::parse(quote!(id = "")).is_err());
        assert!(Args::parse(quote!(on_lost = stop)).is_err());
        assert!(Args::parse(quote!(client = self.db)).is_err());
        assert!(Args::parse(quote!(crate = "pglock")).is_err());
        assert!(Args::parse(quote!(Skip)).is_err());
        assert!(Args::parse(quote!(xact = self.tx)).unwrap().xact.is_some());
        assert!(Args::parse(quote!(xact = tx.inner)).is_err());
        assert!(Args::parse(quote!(xact = f())).is_err());
    }

    #[test]
    fn lease_floor() {
        assert!(Args::parse(quote!(lease = "999ms")).is_err());
        assert!(Args::parse(quote!(lease = "1s")).is_ok());
    }

    #[test]
    fn fencing_lease_label() {
        let args = Args::parse(quote!(
            "a.b",
            fencing,
            lease = "30s",
            label = self.worker.as_str()
        ))
        .unwrap();
        assert!(args.fencing.is_some() && args.lease.is_some() && args.label.is_some());
        assert!(Args::parse(quote!(fencing)).unwrap().fencing.is_some());
        assert!(Args::parse(quote!(fencing, fencing)).is_err());
        assert!(Args::parse(quote!(fencing = true)).is_err());
        assert!(Args::parse(quote!(lease)).is_err());
        assert!(Args::parse(quote!(label)).is_err());
        assert!(Args::parse(quote!(lease = "0s")).is_err());
        assert!(Args::parse(quote!(lease = "30 seconds")).is_err());
        assert!(Args::parse(quote!(lease = 30)).is_err());
        assert!(Args::parse(quote!(lease = "600h")).is_err());
        assert!(Args::parse(quote!(lease = ttl)).unwrap().lease.is_some());
    }
}
