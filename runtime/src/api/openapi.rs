//! The OpenAPI 3 document of the API, served at `/v1/openapi.json`: the
//! paths come from each handler's `#[utoipa::path]` as the router is built
//! ([`super::routes`]); this adds the title, the token scheme and the
//! schemas of the bodies.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ComponentsBuilder, InfoBuilder, OpenApi, OpenApiBuilder};

/// The document before the paths are added.
pub fn base() -> OpenApi {
    let info = InfoBuilder::new()
        .title("Spool HTTP API")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(
            "The front door to one Spool queue. Every /v1 route takes a tenant token \
             (`Authorization: Bearer spool_…`, made by `spool tokens create`) and reaches only \
             that token's tenant; errors are {\"error\": {kind, message, field?, retryable}}. \
             See docs/api.md.",
        ))
        .build();
    let components = ComponentsBuilder::new()
        .security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("spool_ID_SECRET")
                    .build(),
            ),
        )
        .build();
    OpenApiBuilder::new()
        .info(info)
        .components(Some(components))
        .build()
}
