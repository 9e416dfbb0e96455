//! The stylesheet and the script, compiled into the binary and served
//! under names that carry a hash of their content, so browsers may cache
//! them for a year and still see a new version at once.

use std::sync::LazyLock;

use axum::{
    extract::Path,
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};
use sha2::{Digest, Sha256};

use crate::web::PageError;

const CSS: &str = include_str!("../assets/console.css");
const JS: &str = include_str!("../assets/console.js");

struct Asset {
    /// `console-<hash>.css`.
    name: String,
    body: &'static str,
    content_type: &'static str,
}

fn hashed(stem: &str, ext: &str, body: &'static str, content_type: &'static str) -> Asset {
    let hash = Sha256::digest(body.as_bytes());
    let short: String = hash.iter().take(6).map(|b| format!("{b:02x}")).collect();
    Asset { name: format!("{stem}-{short}.{ext}"), body, content_type }
}

static ASSETS: LazyLock<[Asset; 2]> = LazyLock::new(|| {
    [
        hashed("console", "css", CSS, "text/css; charset=utf-8"),
        hashed("console", "js", JS, "text/javascript; charset=utf-8"),
    ]
});

/// The stylesheet's path, for `<link>`.
pub fn css_path() -> String {
    format!("/assets/{}", ASSETS[0].name)
}

/// The script's path, for `<script src>`.
pub fn js_path() -> String {
    format!("/assets/{}", ASSETS[1].name)
}

pub async fn serve(Path(name): Path<String>) -> Result<Response, PageError> {
    let asset = ASSETS.iter().find(|a| a.name == name).ok_or(PageError::NotFound)?;
    let mut response = asset.body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=31536000, immutable"));
    Ok(response)
}
