//! The `#[pglock::advisory]` attribute. Use it through the `pglock` crate.
use proc_macro::TokenStream;

/// Placeholder until the attribute lands.
#[proc_macro_attribute]
pub fn advisory(_args: TokenStream, item: TokenStream) -> TokenStream {
    item
}
