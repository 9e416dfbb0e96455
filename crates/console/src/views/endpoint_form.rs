//! The endpoint form (add and edit): URL, Header Key and Header Value, an
//! optional e-mail address, event types grouped as the product groups
//! them, the hierarchy with a preview of the body, and the rate limit.
//!
//! The form is one gRPC call (CreateEndpoint or UpdateEndpoint), so a
//! refused save changes nothing; the API's `field: rule` message is shown
//! beside the field it names, and the form keeps what was typed, except
//! the Header Value, which is never sent back to the browser.

use std::collections::HashMap;

use axum::{
    extract::Path,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use hookline_domain::{
    catalog::{self, Group},
    endpoint::Layout,
    event_type::EventType,
    ids::TenantId,
};
use hookline_proto::subscriptions::v1 as spb;
use maud::{Markup, html};

use super::layout;
use crate::web::{Ctx, Fields, PageError, Posted, Query, see_other};

/// What the form holds: what was typed, or the stored endpoint.
#[derive(Debug, Default)]
struct Draft {
    url: String,
    header_key: String,
    /// The stored header's name, when editing an endpoint that has one.
    stored_header: Option<String>,
    email: String,
    event_types: Vec<String>,
    layout: String,
    rate_limit: String,
    description: String,
    preview_type: String,
}

impl Draft {
    fn from_form(form: &Fields, stored_header: Option<String>) -> Self {
        Self {
            url: form.get("url").to_owned(),
            header_key: form.get("header_key").to_owned(),
            stored_header,
            email: form.get("email").to_owned(),
            event_types: form.all("event_types"),
            layout: form.get("layout").to_owned(),
            rate_limit: form.get("rate_limit").to_owned(),
            description: form.get("description").to_owned(),
            preview_type: form.get("preview_type").to_owned(),
        }
    }

    fn from_endpoint(e: &spb::Endpoint) -> Self {
        let header = e.auth_header.as_ref().map(|h| h.name.clone());
        Self {
            url: e.url.clone(),
            header_key: header.clone().unwrap_or_default(),
            stored_header: header,
            email: e.email.clone(),
            event_types: e.event_types.clone(),
            layout: if e.layout == spb::PayloadLayout::Flat as i32 { "flat" } else { "envelope" }.to_owned(),
            rate_limit: e.rate_limit.to_string(),
            description: e.description.clone(),
            preview_type: String::new(),
        }
    }

    fn layout(&self) -> Layout {
        if self.layout == "flat" { Layout::Flat } else { Layout::Envelope }
    }

    fn layout_pb(&self) -> spb::PayloadLayout {
        match self.layout() {
            Layout::Flat => spb::PayloadLayout::Flat,
            Layout::Envelope => spb::PayloadLayout::Envelope,
        }
    }

    /// The type previewed: the one asked for, else the first one ticked,
    /// else the first of all.
    fn preview_type(&self) -> EventType {
        EventType::parse(&self.preview_type)
            .ok()
            .or_else(|| self.event_types.iter().find_map(|t| EventType::parse(t).ok()))
            .unwrap_or(EventType::ALL[0])
    }
}

/// Errors by form field (`form` for the whole form).
type Errors = HashMap<&'static str, String>;

/// The form field an API error names: its message reads `field: rule`.
fn field_of(path: &str) -> &'static str {
    match path {
        "url" => "url",
        p if p.starts_with("auth_header.value") => "header_value",
        p if p.starts_with("auth_header") || p == "clear_auth_header" => "header_key",
        "email" => "email",
        p if p.starts_with("event_types") => "event_types",
        "layout" => "layout",
        "rate_limit" => "rate_limit",
        "description" => "description",
        _ => "form",
    }
}

/// The field and sentence of a refused save.
fn errors_of(status: &tonic::Status) -> Errors {
    let message = status.message();
    let (field, text) = match (status.code(), message.split_once(": ")) {
        (tonic::Code::InvalidArgument, Some((path, rule))) if field_of(path) != "form" => {
            (field_of(path), rule.to_owned())
        }
        _ => ("form", message.to_owned()),
    };
    HashMap::from([(field, text)])
}

/// The body a receiver of `t` gets in `layout`, pretty-printed: that of
/// the type's test event ("Send test event" sends the same data).
pub fn preview_json(t: EventType, layout: Layout, tenant: &TenantId) -> String {
    let event = hookline_domain::events::StoredEvent::test(tenant.clone(), t);
    let body = hookline_domain::layout::render(&event, layout);
    let value: serde_json::Value = serde_json::from_slice(&body).expect("rendered bodies are JSON");
    serde_json::to_string_pretty(&value).expect("JSON prints")
}

/// Where the form posts, and what it is called.
enum Mode<'a> {
    Create,
    Edit(&'a str),
}

fn render(ctx: &Ctx, tenant: &TenantId, mode: Mode, draft: &Draft, errors: &Errors, status: StatusCode) -> Response {
    let base = format!("/t/{tenant}");
    let (title, action) = match mode {
        Mode::Create => ("Add endpoint".to_owned(), format!("{base}/endpoints")),
        Mode::Edit(id) => ("Edit endpoint".to_owned(), format!("{base}/endpoints/{id}")),
    };
    let error = |field: &str| errors.get(field).cloned();
    let invalid = |field: &str| errors.contains_key(field).then_some("true");
    let described = |field: &str, hint: Option<&str>| -> Option<String> {
        let mut ids: Vec<String> = hint.map(str::to_owned).into_iter().collect();
        if errors.contains_key(field) {
            ids.push(format!("{}-error", field.replace('_', "-")));
        }
        (!ids.is_empty()).then(|| ids.join(" "))
    };
    let field_error = |field: &str| -> Markup {
        html! { @if let Some(m) = error(field) { p.field-error id={ (field.replace('_', "-")) "-error" } { (m) } } }
    };
    let preview_type = draft.preview_type();
    let body = html! {
        p.back { a href=(base) { "← Webhooks" } }
        h1 { (title) }
        form.endpoint-form method="post" action=(action) id="endpoint-form" novalidate {
            (layout::csrf(ctx))
            @if let Some(m) = error("form") { p.error role="alert" id="form-error" { (m) } }
            div.field {
                label for="url" { "URL" }
                input id="url" name="url" type="url" value=(draft.url) placeholder="https://erp.example.com/webhooks"
                    aria-invalid=[invalid("url")] aria-describedby=[described("url", Some("url-hint"))];
                p.hint id="url-hint" { "The address Hookline POSTs each event to. Query values are shown masked." }
                (field_error("url"))
            }
            fieldset.field {
                legend { "Authorisation header (optional)" }
                label for="header-key" { "Header Key" }
                input id="header-key" name="header_key" type="text" value=(draft.header_key)
                    placeholder="Authorization or Ocp-Apim-Subscription-Key" autocomplete="off"
                    aria-invalid=[invalid("header_key")] aria-describedby=[described("header_key", None)];
                (field_error("header_key"))
                label for="header-value" { "Header Value" }
                input id="header-value" name="header_value" type="password" value="" autocomplete="new-password"
                    placeholder=(if draft.stored_header.is_some() { "******** (unchanged)" } else { "" })
                    aria-invalid=[invalid("header_value")] aria-describedby=[described("header_value", Some("header-value-hint"))];
                p.hint id="header-value-hint" {
                    @if draft.stored_header.is_some() {
                        "Stored and never shown again. Leave empty to keep it; clear the Header Key to remove the header."
                    } @else {
                        "Write-only: after saving it is shown masked, never in clear."
                    }
                }
                (field_error("header_value"))
            }
            div.field {
                label for="email" { "E-mail address (optional)" }
                input id="email" name="email" type="email" value=(draft.email)
                    aria-invalid=[invalid("email")] aria-describedby=[described("email", Some("email-hint"))];
                p.hint id="email-hint" { "When set, the JSON is sent to this address and no more requests are made to the URL." }
                (field_error("email"))
            }
            fieldset.field.event-types aria-describedby=[described("event_types", Some("event-types-hint"))] {
                legend { "Event types" }
                p.hint id="event-types-hint" { "None ticked: every event type." }
                (field_error("event_types"))
                @for group in Group::ALL {
                    fieldset.group {
                        legend { (group.title()) }
                        @for t in group.types() {
                            @let id = format!("type-{}", t.as_str().replace('.', "-"));
                            div.check {
                                input type="checkbox" id=(id) name="event_types" value=(t.as_str())
                                    checked[draft.event_types.iter().any(|s| s == t.as_str())]
                                    aria-describedby={ (id) "-description" };
                                label for=(id) { code { (t.as_str()) } }
                                p.description id={ (id) "-description" } { (catalog::description(t)) }
                            }
                        }
                    }
                }
            }
            fieldset.field.hierarchy aria-describedby=[described("layout", None)] {
                legend { "Hierarchy" }
                div.check {
                    input type="radio" id="layout-envelope" name="layout" value="envelope" checked[draft.layout() == Layout::Envelope];
                    label for="layout-envelope" { "Envelope" }
                    span.description { " — " code { "{\"type\", \"timestamp\", \"data\": {…}}" } }
                }
                div.check {
                    input type="radio" id="layout-flat" name="layout" value="flat" checked[draft.layout() == Layout::Flat];
                    label for="layout-flat" { "Flat" }
                    span.description { " — nested fields as top-level keys, e.g. " code { "customer_email" } }
                }
                (field_error("layout"))
                div.preview {
                    label for="preview-type" { "Preview for" }
                    select id="preview-type" name="preview_type" {
                        @for t in EventType::ALL {
                            option value=(t.as_str()) selected[t == preview_type] { (t.as_str()) }
                        }
                    }
                    button type="submit" name="action" value="preview" id="show-preview" formnovalidate { "Show preview" }
                    pre id="preview" aria-live="polite" aria-label="Payload preview"
                        data-preview-url={ (base) "/preview" } { (preview_json(preview_type, draft.layout(), tenant)) }
                }
            }
            div.field {
                label for="rate-limit" { "Rate limit" }
                input id="rate-limit" name="rate_limit" type="number" min="0" max="10000" value=(draft.rate_limit)
                    aria-invalid=[invalid("rate_limit")] aria-describedby=[described("rate_limit", Some("rate-limit-hint"))];
                p.hint id="rate-limit-hint" { "Requests per second at most, for receivers that throttle; 0 or empty: no limit." }
                (field_error("rate_limit"))
            }
            div.field {
                label for="description" { "Description (optional)" }
                input id="description" name="description" type="text" value=(draft.description)
                    aria-invalid=[invalid("description")] aria-describedby=[described("description", None)];
                (field_error("description"))
            }
            div.actions {
                button.primary type="submit" name="action" value="save" id="save-endpoint" { "Save" }
                a href=(base) { "Cancel" }
            }
        }
    };
    let mut response = layout::page(ctx, &title, None, body);
    *response.status_mut() = status;
    response
}

pub async fn new(ctx: Ctx, Path(tenant): Path<String>) -> Result<Response, PageError> {
    let tenant = ctx.tenant(&tenant)?;
    let draft = Draft { rate_limit: "0".into(), ..Draft::default() };
    Ok(render(&ctx, &tenant, Mode::Create, &draft, &Errors::new(), StatusCode::OK))
}

pub async fn edit(ctx: Ctx, Path((tenant, endpoint)): Path<(String, String)>) -> Result<Response, PageError> {
    let tenant = ctx.tenant(&tenant)?;
    let e = get_endpoint(&ctx, &tenant, &endpoint).await?;
    Ok(render(&ctx, &tenant, Mode::Edit(&e.id), &Draft::from_endpoint(&e), &Errors::new(), StatusCode::OK))
}

async fn get_endpoint(ctx: &Ctx, tenant: &TenantId, endpoint: &str) -> Result<spb::Endpoint, PageError> {
    let request =
        spb::GetEndpointRequest { tenant_id: tenant.to_string(), endpoint_id: endpoint.to_owned(), reveal_url: false };
    Ok(ctx.app.backend.subscriptions().get_endpoint(request).await?.into_inner())
}

/// The rate limit typed, or the error beside its field.
fn rate_limit(draft: &Draft) -> Result<u32, Errors> {
    if draft.rate_limit.is_empty() {
        return Ok(0);
    }
    draft.rate_limit.parse().map_err(|_| {
        HashMap::from([("rate_limit", "must be a whole number of requests per second, 0 to 10000".to_owned())])
    })
}

pub async fn create(Path(tenant): Path<String>, Posted { ctx, form }: Posted) -> Result<Response, PageError> {
    let tenant = ctx.tenant(&tenant)?;
    let draft = Draft::from_form(&form, None);
    let redisplay = |errors: Errors, status| render(&ctx, &tenant, Mode::Create, &draft, &errors, status);
    if form.get("action") == "preview" {
        return Ok(redisplay(Errors::new(), StatusCode::OK));
    }
    let rate_limit = match rate_limit(&draft) {
        Ok(r) => r,
        Err(errors) => return Ok(redisplay(errors, StatusCode::UNPROCESSABLE_ENTITY)),
    };
    let header_value = form.raw("header_value");
    let auth_header = (!draft.header_key.is_empty() || !header_value.is_empty())
        .then(|| spb::AuthHeader { name: draft.header_key.clone(), value: header_value.to_owned() });
    let request = spb::CreateEndpointRequest {
        tenant_id: tenant.to_string(),
        url: draft.url.clone(),
        auth_header,
        event_types: draft.event_types.clone(),
        layout: draft.layout_pb().into(),
        disabled: false,
        description: draft.description.clone(),
        email: draft.email.clone(),
        rate_limit,
        // Filters are set with the CLI or the API; the endpoint page shows them.
        filters: Vec::new(),
    };
    match ctx.app.backend.subscriptions().create_endpoint(request).await {
        Ok(e) => Ok(see_other(&format!("/t/{tenant}/endpoints/{}?notice=created", e.into_inner().id))),
        Err(s) if is_refusal(&s) => Ok(redisplay(errors_of(&s), StatusCode::UNPROCESSABLE_ENTITY)),
        Err(s) => Err(s.into()),
    }
}

fn is_refusal(s: &tonic::Status) -> bool {
    matches!(s.code(), tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition)
}

pub async fn update(
    Path((tenant, endpoint)): Path<(String, String)>,
    Posted { ctx, form }: Posted,
) -> Result<Response, PageError> {
    let tenant = ctx.tenant(&tenant)?;
    let stored = get_endpoint(&ctx, &tenant, &endpoint).await?;
    let draft = Draft::from_form(&form, stored.auth_header.as_ref().map(|h| h.name.clone()));
    let redisplay = |errors: Errors, status| render(&ctx, &tenant, Mode::Edit(&stored.id), &draft, &errors, status);
    if form.get("action") == "preview" {
        return Ok(redisplay(Errors::new(), StatusCode::OK));
    }
    let rate_limit = match rate_limit(&draft) {
        Ok(r) => r,
        Err(errors) => return Ok(redisplay(errors, StatusCode::UNPROCESSABLE_ENTITY)),
    };
    let header_value = form.raw("header_value");
    // An empty Header Value keeps the stored one while the key stays; a new
    // key needs its value (the API says so, beside the Header Value field).
    let (auth_header, clear_auth_header) = match (draft.header_key.as_str(), header_value) {
        ("", "") => (None, draft.stored_header.is_some()),
        (key, "") if draft.stored_header.as_deref() == Some(key) => (None, false),
        (key, value) => (Some(spb::AuthHeader { name: key.to_owned(), value: value.to_owned() }), false),
    };
    let request = spb::UpdateEndpointRequest {
        tenant_id: tenant.to_string(),
        endpoint_id: stored.id.clone(),
        url: Some(draft.url.clone()),
        auth_header,
        clear_auth_header,
        event_types: Some(spb::EventTypeList { event_types: draft.event_types.clone() }),
        layout: Some(draft.layout_pb().into()),
        enabled: None,
        description: Some(draft.description.clone()),
        email: Some(draft.email.clone()),
        rate_limit: Some(rate_limit),
        // The form does not edit filters: they stay as they are.
        filters: None,
    };
    match ctx.app.backend.subscriptions().update_endpoint(request).await {
        Ok(_) => Ok(see_other(&format!("/t/{tenant}/endpoints/{}?notice=saved", stored.id))),
        Err(s) if is_refusal(&s) => Ok(redisplay(errors_of(&s), StatusCode::UNPROCESSABLE_ENTITY)),
        Err(s) => Err(s.into()),
    }
}

/// `GET /t/<tenant>/preview?type=&layout=`: the preview as text, for the
/// script that updates it as the form changes.
pub async fn preview(ctx: Ctx, Path(tenant): Path<String>, Query(q): Query) -> Result<Response, PageError> {
    let tenant = ctx.tenant(&tenant)?;
    let t = EventType::parse(q.get("type")).map_err(|_| PageError::NotFound)?;
    let layout = if q.get("layout") == "flat" { Layout::Flat } else { Layout::Envelope };
    let mut response = preview_json(t, layout, &tenant).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_field_paths_land_beside_their_form_fields() {
        let cases = [
            ("url: must be http or https", "url"),
            ("auth_header.name: is not an HTTP token", "header_key"),
            ("auth_header.value: is required", "header_value"),
            ("email: is not an e-mail address", "email"),
            ("event_types[0]: unknown event type `x`", "event_types"),
            ("rate_limit: must be at most 10000", "rate_limit"),
            ("tenant_id: must be ...", "form"),
        ];
        for (message, field) in cases {
            let errors = errors_of(&tonic::Status::invalid_argument(message));
            assert!(errors.contains_key(field), "{message} → {errors:?}");
        }
        let limit = errors_of(&tonic::Status::failed_precondition("plan limit reached: the basic plan allows 1"));
        assert_eq!(limit.get("form").map(String::as_str), Some("plan limit reached: the basic plan allows 1"));
    }

    #[test]
    fn the_preview_is_the_body_a_receiver_gets() {
        let tenant = TenantId::parse("acme").unwrap();
        let flat: serde_json::Value =
            serde_json::from_str(&preview_json(EventType::CustomerCreated, Layout::Flat, &tenant)).unwrap();
        assert_eq!(flat["type"], "customer.created");
        assert!(flat.get("data").is_none() && flat.get("customer_email").is_some(), "{flat}");
        let envelope: serde_json::Value =
            serde_json::from_str(&preview_json(EventType::CustomerCreated, Layout::Envelope, &tenant)).unwrap();
        assert!(envelope["data"]["customer"].is_object(), "{envelope}");
    }
}
