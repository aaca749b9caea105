//! A cookie-keeping HTTP client for the dashboard (/ui) over real HTTP.

use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::{Client, StatusCode};
use std::collections::BTreeMap;

/// A cookie-keeping HTTP client that does not follow redirects (so they can be checked).
pub struct Browser {
    pub client: Client,
    base: String,
    pub cookies: BTreeMap<String, String>,
}

pub struct Page {
    pub status: StatusCode,
    /// The `Retry-After` header in seconds, if any.
    pub retry_after: Option<u64>,
    pub location: Option<String>,
    pub set_cookies: Vec<String>,
    pub body: String,
}

impl Page {
    /// The value of the first `name="csrf"` hidden field.
    pub fn csrf(&self) -> String {
        let marker = "name=\"csrf\" value=\"";
        let start = self.body.find(marker).expect("page has a CSRF field") + marker.len();
        let end = self.body[start..].find('"').unwrap();
        self.body[start..start + end].to_string()
    }
}

impl Browser {
    pub fn new(base: &str) -> Browser {
        Browser {
            client: Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: base.to_string(),
            cookies: BTreeMap::new(),
        }
    }

    pub fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn finish(&mut self, response: reqwest::Response) -> Page {
        let status = response.status();
        let location = response
            .headers()
            .get(LOCATION)
            .map(|v| v.to_str().unwrap().to_string());
        let set_cookies: Vec<String> = response
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect();
        for cookie in &set_cookies {
            let pair = cookie.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() || cookie.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_string(), value.to_string());
            }
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok()?.parse().ok());
        Page {
            status,
            retry_after,
            location,
            set_cookies,
            body: response.text().await.unwrap(),
        }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .header(COOKIE, self.cookie_header())
            .send()
            .await
            .unwrap();
        self.finish(response).await
    }

    pub async fn post_form(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .header(COOKIE, self.cookie_header())
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        self.finish(response).await
    }

    pub async fn login_user(&mut self, user: &str, password: &str) -> Page {
        self.login_user_to("default", user, password).await
    }

    pub async fn login_user_to(&mut self, tenant: &str, user: &str, password: &str) -> Page {
        self.login_with(tenant, &[("user", user), ("password", password)])
            .await
    }

    /// Logs in to `tenant` with `fields` (user/password or token) through a fresh login form.
    pub async fn login_with(&mut self, tenant: &str, fields: &[(&str, &str)]) -> Page {
        let form = self.get("/ui/login").await;
        assert_eq!(form.status, StatusCode::OK);
        let csrf = form.csrf();
        let mut all = vec![("csrf", csrf.as_str()), ("tenant", tenant)];
        all.extend_from_slice(fields);
        self.post_form("/ui/login", &all).await
    }

    /// Creates a dashboard account on the Users page (the session must be an admin's).
    pub async fn create_user(&mut self, user: &str, password: &str, role: &str) -> Page {
        let csrf = self.get("/ui/users").await.csrf();
        self.post_form(
            "/ui/users",
            &[
                ("csrf", &csrf),
                ("user", user),
                ("password", password),
                ("role", role),
            ],
        )
        .await
    }

    pub async fn login(&mut self, token: &str) -> Page {
        self.login_to("default", token).await
    }

    pub async fn login_to(&mut self, tenant: &str, token: &str) -> Page {
        self.login_with(tenant, &[("token", token)]).await
    }
}
