//! The `#[handler]` attribute of `spool-sdk`.
//!
//! It leaves the user's function untouched and adds a hidden module that
//! implements the WIT `handle` export by calling it. A signature the glue
//! cannot call is a compile error pointing at the offending part, never a
//! panic inside the macro.

use proc_macro::TokenStream;
use proc_macro2::Span;
use quote::quote;
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, ReturnType, Type};

/// Turn a function into the plugin's job handler.
///
/// `#[handler]` decodes the payload as JSON into the first argument's type
/// and encodes the `Ok` value as JSON. `#[handler(bytes)]` passes the payload
/// as `Vec<u8>` or `&[u8]` and returns `Vec<u8>`. Either form may take a
/// second argument `&spool_sdk::Job`. The return type is
/// `Result<_, E>` with `E: Into<spool_sdk::JobError>`.
#[proc_macro_attribute]
pub fn handler(attr: TokenStream, item: TokenStream) -> TokenStream {
    let mode = match parse_mode(attr.into()) {
        Ok(mode) => mode,
        Err(error) => return error.to_compile_error().into(),
    };
    let function = match syn::parse::<ItemFn>(item) {
        Ok(function) => function,
        Err(error) => {
            return syn::Error::new(error.span(), "#[handler] goes on a free function")
                .to_compile_error()
                .into();
        }
    };
    match expand(mode, function) {
        Ok(tokens) => tokens.into(),
        Err(error) => error.to_compile_error().into(),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Json,
    Bytes,
}

fn parse_mode(attr: proc_macro2::TokenStream) -> syn::Result<Mode> {
    if attr.is_empty() {
        return Ok(Mode::Json);
    }
    let ident: syn::Ident = syn::parse2(attr.clone()).map_err(|_| {
        syn::Error::new_spanned(&attr, "expected `#[handler]` or `#[handler(bytes)]`")
    })?;
    if ident == "bytes" {
        Ok(Mode::Bytes)
    } else {
        Err(syn::Error::new_spanned(
            ident,
            "unknown handler option: expected `bytes` or nothing",
        ))
    }
}

/// How the handler takes its payload.
enum Input {
    Owned,
    Borrowed,
}

fn check_signature(mode: Mode, function: &ItemFn) -> syn::Result<(Input, bool)> {
    let sig = &function.sig;
    if let Some(token) = &sig.asyncness {
        return Err(syn::Error::new_spanned(
            token,
            "a handler cannot be async: the `handle` export is synchronous",
        ));
    }
    if let Some(token) = &sig.unsafety {
        return Err(syn::Error::new_spanned(token, "a handler cannot be unsafe"));
    }
    if !sig.generics.params.is_empty() {
        return Err(syn::Error::new_spanned(
            &sig.generics,
            "a handler cannot be generic: the input type must be known to decode the payload",
        ));
    }
    if let Some(variadic) = &sig.variadic {
        return Err(syn::Error::new_spanned(
            variadic,
            "a handler cannot be variadic",
        ));
    }
    let args: Vec<&FnArg> = sig.inputs.iter().collect();
    if args.is_empty() || args.len() > 2 {
        let span = if args.is_empty() {
            sig.paren_token.span.join()
        } else {
            sig.inputs.span()
        };
        return Err(syn::Error::new(
            span,
            "a handler takes the input and, optionally, `&spool_sdk::Job`: `fn name(input: T)` or `fn name(input: T, job: &Job)`",
        ));
    }
    let mut typed = Vec::new();
    for arg in &args {
        match arg {
            FnArg::Receiver(receiver) => {
                return Err(syn::Error::new_spanned(
                    receiver,
                    "a handler is a free function and cannot take `self`",
                ));
            }
            FnArg::Typed(pat) => typed.push(&*pat.ty),
        }
    }
    if let Some(job) = typed.get(1)
        && !matches!(job, Type::Reference(r) if r.mutability.is_none())
    {
        return Err(syn::Error::new_spanned(
            job,
            "the second argument of a handler must be `&spool_sdk::Job`",
        ));
    }
    let input = match mode {
        Mode::Json => {
            if let Type::Reference(reference) = typed[0] {
                return Err(syn::Error::new_spanned(
                    reference,
                    "a JSON handler takes its input by value (a type implementing `serde::Deserialize`); use `#[handler(bytes)]` for raw bytes",
                ));
            }
            Input::Owned
        }
        Mode::Bytes => bytes_input(typed[0])?,
    };
    match &sig.output {
        ReturnType::Type(_, ty) if is_result(ty) => {}
        ReturnType::Type(_, ty) => {
            return Err(syn::Error::new_spanned(
                ty,
                "a handler returns `Result<Output, spool_sdk::JobError>`",
            ));
        }
        ReturnType::Default => {
            return Err(syn::Error::new(
                sig.ident.span(),
                "a handler returns `Result<Output, spool_sdk::JobError>`; add a return type",
            ));
        }
    }
    Ok((input, typed.len() == 2))
}

fn bytes_input(ty: &Type) -> syn::Result<Input> {
    let error = || {
        syn::Error::new_spanned(
            ty,
            "a `#[handler(bytes)]` takes its input as `Vec<u8>` or `&[u8]`",
        )
    };
    match ty {
        Type::Reference(reference) => match &*reference.elem {
            Type::Slice(slice) if is_u8(&slice.elem) && reference.mutability.is_none() => {
                Ok(Input::Borrowed)
            }
            _ => Err(error()),
        },
        Type::Path(path) => {
            let last = path.path.segments.last().ok_or_else(error)?;
            match &last.arguments {
                syn::PathArguments::AngleBracketed(args)
                    if last.ident == "Vec" && args.args.len() == 1 =>
                {
                    match args.args.first() {
                        Some(syn::GenericArgument::Type(inner)) if is_u8(inner) => Ok(Input::Owned),
                        _ => Err(error()),
                    }
                }
                _ => Err(error()),
            }
        }
        _ => Err(error()),
    }
}

fn is_u8(ty: &Type) -> bool {
    matches!(ty, Type::Path(p) if p.path.is_ident("u8"))
}

fn is_result(ty: &Type) -> bool {
    matches!(ty, Type::Path(p) if p.path.segments.last().is_some_and(|s| s.ident == "Result"))
}

fn expand(mode: Mode, function: ItemFn) -> syn::Result<proc_macro2::TokenStream> {
    let (input, takes_job) = check_signature(mode, &function)?;
    let name = &function.sig.ident;
    let job_arg = if takes_job { quote!(, job) } else { quote!() };
    let call = match (mode, input) {
        (Mode::Json, _) => quote! {
            ::spool_sdk::__private::run_json(job, |input, job| {
                let _ = &job;
                super::#name(input #job_arg)
            })
        },
        (Mode::Bytes, Input::Owned) => quote! {
            ::spool_sdk::__private::run_bytes(job, |input, job| {
                let _ = &job;
                super::#name(input #job_arg)
            })
        },
        (Mode::Bytes, Input::Borrowed) => quote! {
            ::spool_sdk::__private::run_bytes(job, |input, job| {
                let _ = &job;
                super::#name(&input #job_arg)
            })
        },
    };
    let glue = syn::Ident::new(&format!("__spool_handler_{name}"), Span::call_site());
    Ok(quote! {
        #function

        #[doc(hidden)]
        #[allow(unsafe_code)]
        mod #glue {
            struct Component;

            impl ::spool_sdk::__private::Guest for Component {
                fn handle(
                    job: ::spool_sdk::__private::RawJob,
                ) -> ::core::result::Result<
                    ::std::vec::Vec<u8>,
                    ::spool_sdk::__private::RawJobError,
                > {
                    #call
                }
            }

            ::spool_sdk::__private::export_handler!(Component);

            /// The SDK version, read by the host before it links the plugin.
            #[cfg(target_arch = "wasm32")]
            #[unsafe(link_section = "spool-sdk-version")]
            #[used]
            static SPOOL_SDK_VERSION: [u8; ::spool_sdk::__private::VERSION_LEN] =
                ::spool_sdk::__private::VERSION_BYTES;
        }
    })
}
