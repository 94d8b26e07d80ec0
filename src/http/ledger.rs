//! The verifiable consent log: the public checkpoint and key, proofs, a contact's proof
//! bundle, and the check of the whole log.

use actix_web::{HttpResponse, get, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::extract::{Admin, ApiQuery, Viewer, parse_id};
use crate::domain::ContactId;
use crate::error::{Error, Result};
use crate::services::consent_records;
use crate::services::ledger::{self as service, LedgerReport, ProofBundle};

const TEXT: &str = "text/plain; charset=utf-8";

#[utoipa::path(
    tag = "consent",
    responses(
        (status = 200, description = "The latest signed checkpoint of the consent ledger: a C2SP tlog-checkpoint (origin, tree size, base64 root hash) signed as a C2SP signed note with Ed25519", content_type = "text/plain", body = String),
        (status = 503, description = "No checkpoint has been signed yet", body = super::Problem, content_type = "application/problem+json"),
    )
)]
#[get("/consent/checkpoint")]
pub async fn checkpoint(state: web::Data<AppState>) -> Result<HttpResponse> {
    let note = service::latest_checkpoint(&state.db)
        .await?
        .ok_or_else(|| Error::Unavailable("the ledger has signed no checkpoint yet".into()))?;
    Ok(HttpResponse::Ok().content_type(TEXT).insert_header(("Cache-Control", "no-cache")).body(note))
}

#[utoipa::path(
    tag = "consent",
    responses((status = 200, description = "The C2SP verifier key that signs the checkpoints (`<name>+<key id>+<base64 key>`)", content_type = "text/plain", body = String))
)]
#[get("/consent/key")]
pub async fn verifier_key(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().content_type(TEXT).body(format!("{}\n", state.ledger_key.verifier().to_text()))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InclusionQuery {
    /// The leaf's position (an event's `leaf_index`).
    pub leaf_index: u64,
    /// The size of the tree to prove it in: a signed checkpoint's size.
    pub tree_size: u64,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConsistencyQuery {
    /// The older tree's size.
    pub from: u64,
    /// The newer tree's size, at most the latest checkpoint's.
    pub to: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProofResponse {
    /// Base64 SHA-256 hashes, in the order RFC 9162 §2.1.3 (inclusion) or §2.1.4
    /// (consistency) gives them.
    pub hashes: Vec<String>,
}

fn hashes(list: Vec<[u8; 32]>) -> ProofResponse {
    ProofResponse { hashes: list.iter().map(|h| STANDARD.encode(h)).collect() }
}

#[utoipa::path(
    tag = "consent",
    params(InclusionQuery),
    responses((status = 200, description = "The inclusion proof of the leaf in the tree of that size", body = ProofResponse)),
    security(("bearer" = []))
)]
#[get("/consent/proof/inclusion")]
pub async fn inclusion_proof(
    _: Viewer,
    state: web::Data<AppState>,
    query: ApiQuery<InclusionQuery>,
) -> Result<web::Json<ProofResponse>> {
    let query = query.0;
    Ok(web::Json(hashes(service::inclusion_proof(&state.db, query.leaf_index, query.tree_size).await?)))
}

#[utoipa::path(
    tag = "consent",
    params(ConsistencyQuery),
    responses((status = 200, description = "The consistency proof: the tree of `to` leaves extends the tree of `from`", body = ProofResponse)),
    security(("bearer" = []))
)]
#[get("/consent/proof/consistency")]
pub async fn consistency_proof(
    _: Viewer,
    state: web::Data<AppState>,
    query: ApiQuery<ConsistencyQuery>,
) -> Result<web::Json<ProofResponse>> {
    let query = query.0;
    Ok(web::Json(hashes(service::consistency_proof(&state.db, query.from, query.to).await?)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProofBundleResponse {
    /// `consento-proof-bundle/1`.
    pub format: String,
    pub contact_id: String,
    /// The signed checkpoint every inclusion proof leads to (C2SP signed note).
    pub checkpoint: String,
    /// The C2SP verifier key that signed it.
    pub verifier_key: String,
    pub tree_size: u64,
    pub events: Vec<BundleEventResponse>,
    /// Events recorded but not yet in a signed checkpoint (they will be within a second).
    pub pending_event_ids: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BundleEventResponse {
    pub leaf_index: u64,
    /// Base64 of the exact leaf bytes; its SHA-256(0x00 || leaf) is the leaf hash.
    pub leaf: String,
    /// Base64 hashes from the leaf upwards (RFC 9162 §2.1.3).
    pub inclusion_proof: Vec<String>,
    /// The leaf decoded (the fields the README's "Leaves" table lists).
    #[schema(value_type = Object)]
    pub fields: serde_json::Value,
    /// The personal values the leaf holds as HMAC-SHA256 digests, with the salt that
    /// checks them; null once the person was erased.
    #[schema(value_type = Option<Object>)]
    pub personal: Option<serde_json::Value>,
}

impl From<ProofBundle> for ProofBundleResponse {
    fn from(bundle: ProofBundle) -> Self {
        Self {
            format: bundle.format,
            contact_id: bundle.contact_id,
            checkpoint: bundle.checkpoint,
            verifier_key: bundle.verifier_key,
            tree_size: bundle.tree_size,
            events: bundle
                .events
                .into_iter()
                .map(|event| BundleEventResponse {
                    leaf_index: event.leaf_index,
                    leaf: event.leaf,
                    inclusion_proof: event.inclusion_proof,
                    fields: serde_json::to_value(&event.fields).unwrap_or_default(),
                    personal: event.personal.and_then(|p| serde_json::to_value(p).ok()),
                })
                .collect(),
            pending_event_ids: bundle.pending_event_ids,
        }
    }
}

#[utoipa::path(
    tag = "consent",
    params(("id" = String, Path, description = "The contact's id")),
    responses((status = 200, description = "A self-contained proof of the contact's consent events: the signed checkpoint, the verifier key, and per event its leaf and inclusion proof", body = ProofBundleResponse)),
    security(("bearer" = []))
)]
#[get("/contacts/{id}/proof")]
pub async fn contact_proof(
    _: Viewer,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<web::Json<ProofBundleResponse>> {
    let id: ContactId = parse_id(&id, "contact")?;
    Ok(web::Json(service::contact_proof(&state.db, id).await?.into()))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LedgerMismatchResponse {
    pub leaf_index: Option<u64>,
    pub event_id: Option<String>,
    pub reason: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LedgerReportResponse {
    /// Every leaf matches its stored event and text, and the tree the latest checkpoint.
    pub valid: bool,
    pub events_checked: u64,
    /// Events recorded and waiting for their leaf.
    pub events_waiting: u64,
    /// The size of the latest signed checkpoint.
    pub checkpoint_size: Option<u64>,
    /// The first thing that does not match.
    pub first_mismatch: Option<LedgerMismatchResponse>,
}

impl From<LedgerReport> for LedgerReportResponse {
    fn from(report: LedgerReport) -> Self {
        Self {
            valid: report.first_mismatch.is_none(),
            events_checked: report.events_checked,
            events_waiting: report.events_waiting,
            checkpoint_size: report.checkpoint_size,
            first_mismatch: report.first_mismatch.map(|m| LedgerMismatchResponse {
                leaf_index: m.leaf_index,
                event_id: m.event_id,
                reason: m.reason,
            }),
        }
    }
}

#[utoipa::path(
    tag = "consent",
    responses((status = 200, description = "The result of checking the whole ledger: every leaf recomputed from the stored events and texts, the tree against the latest signed checkpoint", body = LedgerReportResponse)),
    security(("bearer" = []))
)]
#[get("/consent/verify")]
pub async fn verify_ledger(_: Admin, state: web::Data<AppState>) -> Result<web::Json<LedgerReportResponse>> {
    Ok(web::Json(service::verify(&state.db, Vec::new()).await?.into()))
}

#[utoipa::path(
    tag = "consent",
    params(("id" = String, Path, description = "The contact's id")),
    responses((status = 200, description = "The contact's consent per purpose as ISO/IEC TS 27560 consent records in the W3C Data Privacy Vocabulary (JSON-LD `dpv:ConsentRecord`s), each naming the ledger leaves it rests on", content_type = "application/ld+json", body = Object)),
    security(("bearer" = []))
)]
#[get("/contacts/{id}/proof/dpv")]
pub async fn contact_dpv_record(_: Viewer, state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse> {
    let id: ContactId = parse_id(&id, "contact")?;
    let controller = consent_records::Controller::from_settings(&state.settings);
    let record = consent_records::dpv_record(&state.db, id, controller).await?;
    Ok(HttpResponse::Ok().content_type("application/ld+json").json(record))
}

#[utoipa::path(
    tag = "consent",
    params(("id" = String, Path, description = "The contact's id")),
    responses((status = 200, description = "The contact's consents as a Kantara Initiative Consent Receipt (v1.1)", body = Object)),
    security(("bearer" = []))
)]
#[get("/contacts/{id}/proof/kantara")]
pub async fn contact_kantara_receipt(
    _: Viewer,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<web::Json<serde_json::Value>> {
    let id: ContactId = parse_id(&id, "contact")?;
    let controller = consent_records::Controller::from_settings(&state.settings);
    Ok(web::Json(consent_records::kantara_receipt(&state.db, id, controller).await?))
}

#[utoipa::path(
    tag = "consent",
    params(("token" = String, Path, description = "The proof link's token, from a consent receipt")),
    responses(
        (status = 200, description = "The person's own proof bundle, as a file to keep: the signed checkpoint, the verifier key, and per event its leaf and inclusion proof", body = ProofBundleResponse),
        (status = 404, description = "The link is not valid: forged, expired, or revoked with the preference links", body = super::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many requests from this address", body = super::Problem, content_type = "application/problem+json"),
    )
)]
#[get("/consent/receipt/{token}")]
pub async fn receipt_proof(
    req: actix_web::HttpRequest,
    state: web::Data<AppState>,
    token: web::Path<String>,
) -> Result<HttpResponse> {
    state.limiter.check(&req).map_err(|retry_after| Error::TooManyRequests { retry_after })?;
    let bundle = crate::services::preferences::consent_proof(&state.db, &state.keys, &token)
        .await?
        .ok_or_else(|| Error::NotFound("this proof link is not valid (it may have expired)".into()))?;
    Ok(HttpResponse::Ok()
        .insert_header(("Content-Disposition", "attachment; filename=\"consent-proof.json\""))
        .insert_header(("Cache-Control", "no-store"))
        .json(ProofBundleResponse::from(bundle)))
}
