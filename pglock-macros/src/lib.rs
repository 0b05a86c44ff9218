//! The `#[pglock::advisory]` attribute. Use it through the `pglock` crate, which
//! re-exports it (default feature `macros`) and documents it.

use proc_macro::TokenStream;

mod args;
mod expand;

/// *Defined in `pglock-macros`, versioned in lockstep with `pglock`: use it as
/// `#[pglock::advisory]` and find its documentation in the `pglock` crate.*
#[proc_macro_attribute]
pub fn advisory(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::advisory(args.into(), item.into()).into()
}
