//! Opens and clicks, when a campaign asks for them: an image and redirecting links, both
//! signed. Aggregate counts by default; per recipient only with individual tracking, and
//! then the link names the recipient, not the address.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::{Campaign, CampaignContext};
use crate::domain::CampaignId;
use crate::error::Result;
use crate::services::keys::{Keys, LinkKind};
use crate::storage::campaigns::{self as repo, Outcome};
use crate::storage::{self, Db};

/// Adds the open image and rewrites links as the campaign's tracking asks. `recipient` is
/// empty for aggregate tracking.
pub fn instrument(ctx: &CampaignContext, campaign: &Campaign, recipient: &str, html: &str) -> String {
    let subject = format!("{}/{recipient}", campaign.id);
    let mut html = if campaign.tracking.clicks { rewrite_links(ctx, &subject, html) } else { html.to_owned() };
    if campaign.tracking.opens {
        let token = ctx.keys.sign_link(LinkKind::Track, &subject, Some("o"), None);
        let image =
            format!(r#"<img src="{}/t/{token}" width="1" height="1" alt="" style="display:none">"#, ctx.base_url);
        match html.rfind("</body>") {
            Some(at) => html.insert_str(at, &image),
            None => html.push_str(&image),
        }
    }
    html
}

/// Points every `href="http…"` through the click counter, except the links to leave or
/// manage the subscription.
fn rewrite_links(ctx: &CampaignContext, subject: &str, html: &str) -> String {
    let mut out = String::with_capacity(html.len() + 256);
    let mut rest = html;
    while let Some(at) = rest.find("href=\"") {
        let (before, after) = rest.split_at(at + 6);
        out.push_str(before);
        let Some(end) = after.find('"') else {
            rest = after;
            break;
        };
        let url = after[..end].replace("&amp;", "&");
        let own = url.starts_with(&format!("{}/unsubscribe/", ctx.base_url))
            || url.starts_with(&format!("{}/preferences/", ctx.base_url));
        if (url.starts_with("https://") || url.starts_with("http://")) && !own {
            let scope = format!("c{}", URL_SAFE_NO_PAD.encode(url.as_bytes()));
            out.push_str(&format!(
                "{}/t/{}",
                ctx.base_url,
                ctx.keys.sign_link(LinkKind::Track, subject, Some(&scope), None)
            ));
        } else {
            out.push_str(&after[..end]);
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// What a tracking link was: an open, or a click to a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hit {
    Open,
    Click(String),
}

/// Counts a hit; answers what it was, `None` for a link that is not valid.
pub async fn record(db: &Db, keys: &Keys, token: &str) -> Result<Option<Hit>> {
    let Some(claims) = keys.verify_link(LinkKind::Track, token) else {
        return Ok(None);
    };
    let hit = match claims.scope.as_deref() {
        Some("o") => Hit::Open,
        Some(scope) if scope.starts_with('c') => {
            match URL_SAFE_NO_PAD.decode(&scope[1..]).ok().and_then(|bytes| String::from_utf8(bytes).ok()) {
                Some(url) => Hit::Click(url),
                None => return Ok(None),
            }
        }
        _ => return Ok(None),
    };
    let (campaign, recipient) = claims.subject.split_once('/').unwrap_or((claims.subject.as_str(), ""));
    // The subject was signed by this server: a campaign id that does not parse is a
    // link it never made.
    let Ok(campaign) = campaign.parse::<CampaignId>() else {
        return Ok(None);
    };
    let recipient = recipient.to_owned();
    let click = matches!(hit, Hit::Click(_));
    db.write(move |conn| {
        repo::count_engagement(conn, campaign, click)?;
        if !recipient.is_empty() {
            let outcome = if click { Outcome::Clicked } else { Outcome::Opened };
            repo::mark_outcome(conn, &recipient, outcome, storage::now())?;
        }
        Ok(())
    })
    .await?;
    Ok(Some(hit))
}
