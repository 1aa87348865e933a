//! What every page shares: the templates compiled into the binary, the label catalogues,
//! the reader's language, the CSRF token of a browser, the stylesheet's fingerprinted
//! address, and the security headers of an HTML answer.

use std::collections::HashMap;
use std::sync::OnceLock;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use minijinja::Environment;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Languages the interface speaks: tag and catalogue.
const CATALOGUES: &[(&str, &str)] = &[
    ("zh", include_str!("i18n/zh.toml")),
    ("en", include_str!("i18n/en.toml")),
];

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("templates/base.html")),
    ("home.html", include_str!("templates/home.html")),
    ("guide.html", include_str!("templates/guide.html")),
    ("track.html", include_str!("templates/track.html")),
    ("tracked.html", include_str!("templates/tracked.html")),
    ("error.html", include_str!("templates/error.html")),
    ("password.html", include_str!("templates/password.html")),
    ("stats.html", include_str!("templates/stats.html")),
    ("inputs.html", include_str!("templates/inputs.html")),
    ("apply.html", include_str!("templates/apply.html")),
    ("bundle.html", include_str!("templates/bundle.html")),
    (
        "bundle_receipt.html",
        include_str!("templates/bundle_receipt.html"),
    ),
    (
        "bundle_tracked.html",
        include_str!("templates/bundle_tracked.html"),
    ),
    ("receipt.html", include_str!("templates/receipt.html")),
    ("signin.html", include_str!("templates/signin.html")),
    ("worklist.html", include_str!("templates/worklist.html")),
    ("case.html", include_str!("templates/case.html")),
    ("board.html", include_str!("templates/board.html")),
    ("intake.html", include_str!("templates/intake.html")),
    ("admin.html", include_str!("templates/admin.html")),
    ("audit.html", include_str!("templates/audit.html")),
];

pub const CSS: &str = include_str!("assets/site.css");

/// Cookie of the reader's chosen language.
const LANG_COOKIE: &str = "guichet_lang";
/// Cookie holding a browser's CSRF token (HttpOnly: a page of another site can read
/// neither it nor the forms that carry it).
pub const CSRF_COOKIE: &str = "guichet_csrf";

/// No script, no frames, no plugins; styles and forms only from here.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

struct Site {
    env: Environment<'static>,
    /// Labels by language, flattened (`track.title`).
    labels: HashMap<&'static str, HashMap<String, String>>,
    /// `/static/site.<hash>.css`: changes with the file, so it is cached for ever.
    css_path: String,
}

fn site() -> &'static Site {
    static SITE: OnceLock<Site> = OnceLock::new();
    SITE.get_or_init(|| {
        let mut env = Environment::new();
        // `field_errors.number` on a form without errors is simply nothing.
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
        for (name, source) in TEMPLATES {
            // Compiled into the binary and covered by the tests: a broken template is a
            // build that does not pass them, not a state a running server can reach.
            if let Err(e) = env.add_template(name, source) {
                tracing::error!(message = "a page template does not compile", template = name, error = %e);
            }
        }
        let labels = CATALOGUES
            .iter()
            .map(|(lang, text)| (*lang, flatten(text)))
            .collect();
        let hash = hex::encode(&Sha256::digest(CSS.as_bytes())[..5]);
        Site {
            env,
            labels,
            css_path: format!("/static/site.{hash}.css"),
        }
    })
}

/// The stylesheet's address, fingerprinted by its content.
pub fn css_path() -> &'static str {
    &site().css_path
}

fn flatten(text: &str) -> HashMap<String, String> {
    fn walk(prefix: &str, v: &toml::Value, out: &mut HashMap<String, String>) {
        match v {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
            }
            toml::Value::String(s) => {
                out.insert(prefix.to_string(), s.clone());
            }
            _ => {}
        }
    }
    let mut out = HashMap::new();
    if let Ok(v) = text.parse::<toml::Value>() {
        walk("", &v, &mut out);
    }
    out
}

/// One label in a language, or in the other languages if it has none there.
pub fn label(lang: &str, key: &str) -> String {
    let site = site();
    std::iter::once(lang)
        .chain(CATALOGUES.iter().map(|(l, _)| *l))
        .find_map(|l| site.labels.get(l).and_then(|m| m.get(key)).cloned())
        .unwrap_or_else(|| key.to_string())
}

/// A label, or `fallback` where no catalogue has one (an outcome a script names).
pub fn label_or(lang: &str, key: &str, fallback: &str) -> String {
    let l = label(lang, key);
    if l == key {
        fallback.to_string()
    } else {
        l
    }
}

/// What the engine refused, said on a staff page: in English its own sentence; in
/// another language the kind of refusal (from the error's stable code) worded there,
/// followed by the engine's details.
pub fn refusal(lang: &str, code: &str, message: &str) -> String {
    let kind = label_or(lang, &format!("refusal.{code}"), "");
    let reason = if lang == "en" || kind.is_empty() {
        message.to_string()
    } else {
        label(lang, "refusal.detail")
            .replace("{reason}", &kind)
            .replace("{detail}", message)
    };
    label(lang, "staff.refused").replace("{reason}", &reason)
}

/// The language a page is shown in: `?lang=` (remembered in a cookie), the cookie, the
/// browser's `Accept-Language`, else the office's.
pub fn language(query: Option<&str>, headers: &HeaderMap, office: &str) -> &'static str {
    let known = |tag: &str| {
        let primary = tag
            .split(['-', '_'])
            .next()
            .unwrap_or(tag)
            .trim()
            .to_ascii_lowercase();
        CATALOGUES.iter().map(|(l, _)| *l).find(|l| *l == primary)
    };
    if let Some(l) = query.and_then(known) {
        return l;
    }
    if let Some(l) = cookie(headers, LANG_COOKIE).as_deref().and_then(known) {
        return l;
    }
    let accepted = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let mut ranked: Vec<(f32, &str)> = accepted
        .split(',')
        .filter_map(|part| {
            let mut it = part.split(';');
            let tag = it.next()?.trim();
            let q = it
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.parse().ok())
                .unwrap_or(1.0);
            Some((q, tag))
        })
        .collect();
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
    ranked
        .into_iter()
        .find_map(|(_, tag)| known(tag))
        .or_else(|| known(office))
        .unwrap_or("zh")
}

/// A cookie's value from the request.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            let (k, v) = c.trim().split_once('=')?;
            (k == name).then(|| v.to_string())
        })
}

/// The browser's CSRF token, and whether it is new (then it is set with the answer).
pub fn csrf_token(headers: &HeaderMap) -> (String, bool) {
    match cookie(headers, CSRF_COOKIE)
        .filter(|t| t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        Some(t) => (t, false),
        None => {
            let mut bytes = [0u8; 32];
            rand::Rng::fill(&mut rand::rng(), &mut bytes);
            (hex::encode(bytes), true)
        }
    }
}

/// Whether a form's token is the browser's (compared in constant time).
pub fn csrf_ok(headers: &HeaderMap, sent: &str) -> bool {
    let Some(expected) = cookie(headers, CSRF_COOKIE) else {
        return false;
    };
    bool::from(subtle::ConstantTimeEq::ct_eq(
        expected.as_bytes(),
        sent.as_bytes(),
    ))
}

#[derive(Serialize)]
struct LanguageLink {
    tag: &'static str,
    name: String,
}

/// Percent-encoding of a query value.
pub fn url_encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b':' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A page to answer with: a template, its context, and what the answer sets.
#[derive(Clone)]
pub struct Page {
    pub status: StatusCode,
    pub template: &'static str,
    pub lang: &'static str,
    pub office: String,
    pub context: serde_json::Value,
    /// Remember `?lang=` in a cookie.
    pub remember_lang: bool,
    /// A new CSRF token to set.
    pub set_csrf: Option<String>,
}

impl Page {
    pub fn new(template: &'static str, lang: &'static str, office: &str) -> Page {
        Page {
            status: StatusCode::OK,
            template,
            lang,
            office: office.to_string(),
            context: serde_json::json!({}),
            remember_lang: false,
            set_csrf: None,
        }
    }

    pub fn with(mut self, key: &str, value: impl Serialize) -> Page {
        if let serde_json::Value::Object(m) = &mut self.context {
            m.insert(
                key.to_string(),
                serde_json::to_value(value).unwrap_or(serde_json::Value::Null),
            );
        }
        self
    }

    pub fn status(mut self, status: StatusCode) -> Page {
        self.status = status;
        self
    }

    /// The labels of the page's language, completed from the others.
    fn labels(&self) -> HashMap<String, String> {
        let site = site();
        let mut out = HashMap::new();
        for (lang, _) in CATALOGUES.iter().rev() {
            if *lang != self.lang {
                if let Some(l) = site.labels.get(lang) {
                    out.extend(l.clone());
                }
            }
        }
        if let Some(l) = site.labels.get(self.lang) {
            out.extend(l.clone());
        }
        out
    }
}

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        let site = site();
        let languages: Vec<LanguageLink> = CATALOGUES
            .iter()
            .map(|(tag, _)| LanguageLink {
                tag,
                name: site
                    .labels
                    .get(tag)
                    .and_then(|l| l.get("lang_name"))
                    .cloned()
                    .unwrap_or_else(|| tag.to_string()),
            })
            .collect();
        let mut context = self.context.clone();
        if let serde_json::Value::Object(m) = &mut context {
            m.insert("lang".into(), self.lang.into());
            m.insert("office".into(), self.office.clone().into());
            m.insert("css".into(), site.css_path.clone().into());
            m.insert("t".into(), serde_json::json!(self.labels()));
            m.insert("languages".into(), serde_json::json!(languages));
        }
        let body = site
            .env
            .get_template(self.template)
            .and_then(|t| t.render(&context));
        let (status, body) = match body {
            Ok(b) => (self.status, b),
            Err(e) => {
                tracing::error!(message = "a page did not render", template = self.template, error = %e);
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "<!doctype html><title>Error</title><p>This page could not be shown.</p>"
                        .to_string(),
                )
            }
        };
        let mut response = (status, body).into_response();
        let h = response.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        secure(h);
        if self.remember_lang {
            if let Ok(v) = HeaderValue::from_str(&format!(
                "{LANG_COOKIE}={}; Path=/; Max-Age=31536000; SameSite=Lax",
                self.lang
            )) {
                h.append(header::SET_COOKIE, v);
            }
        }
        if let Some(token) = self.set_csrf {
            if let Ok(v) = HeaderValue::from_str(&format!(
                "{CSRF_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"
            )) {
                h.append(header::SET_COOKIE, v);
            }
        }
        response
    }
}

/// The security headers of every page.
pub fn secure(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_compiles_and_every_catalogue_has_the_same_keys() {
        let site = site();
        for (name, source) in TEMPLATES {
            let mut env = Environment::new();
            if let Err(e) = env.add_template(name, source) {
                panic!("{name}: {e:#}");
            }
            assert!(site.env.get_template(name).is_ok(), "{name}");
        }
        let zh: std::collections::BTreeSet<_> = site.labels["zh"].keys().collect();
        let en: std::collections::BTreeSet<_> = site.labels["en"].keys().collect();
        assert_eq!(zh, en, "the catalogues differ");
        assert!(zh.len() > 50);
    }

    #[test]
    fn the_language_comes_from_the_query_the_cookie_the_browser_then_the_office() {
        let mut h = HeaderMap::new();
        assert_eq!(language(None, &h, "zh"), "zh");
        assert_eq!(language(None, &h, "en-GB"), "en");
        h.insert(
            header::ACCEPT_LANGUAGE,
            HeaderValue::from_static("fr;q=0.9, en-US;q=0.8, zh;q=0.1"),
        );
        assert_eq!(language(None, &h, "zh"), "en");
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; guichet_lang=zh"),
        );
        assert_eq!(language(None, &h, "en"), "zh");
        assert_eq!(language(Some("en"), &h, "zh"), "en");
        assert_eq!(language(Some("xx"), &h, "en"), "zh");
    }
}
