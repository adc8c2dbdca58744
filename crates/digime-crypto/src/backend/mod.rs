//! The cryptographic primitives, from one of two backends chosen at compile time:
//!
//! * `aws-lc` (the default): [`aws_lc`], on aws-lc-rs;
//! * `rustcrypto`: [`rust_crypto`], on the RustCrypto crates, with no C in its tree.
//!
//! With both features on, aws-lc-rs serves the crate (features stay additive: a crate
//! that asks for `rustcrypto` still builds beside one that keeps the default) and the
//! other backend is compiled too, so the tests can check each against the other. With
//! neither, the crate does not compile.
//!
//! Both modules have the same items with the same signatures; the rest of the crate
//! only ever names `imp`.

#[cfg(not(any(feature = "aws-lc", feature = "rustcrypto")))]
compile_error!(
    "digime-crypto needs a crypto backend: enable its feature `aws-lc` (the default) or \
     `rustcrypto` (pure Rust)"
);

#[cfg(feature = "aws-lc")]
pub mod aws_lc;
#[cfg(feature = "rustcrypto")]
#[cfg_attr(feature = "aws-lc", allow(dead_code))]
pub mod rust_crypto;

#[cfg(feature = "aws-lc")]
pub(crate) use aws_lc as imp;
#[cfg(all(feature = "rustcrypto", not(feature = "aws-lc")))]
pub(crate) use rust_crypto as imp;
