//! System mail: queued with the signup, sent by the worker, kept and retried while the
//! SMTP server is down.

use diesel::prelude::*;
use serde_json::json;

use consento::mail::Transport;
use consento::services::mailer::OutboxWorker;

use crate::helpers::{MailServer, spawn_app_with};

#[tokio::test]
async fn a_confirmation_mail_survives_an_smtp_outage_and_is_sent_once_it_is_back() {
    // An SMTP URL where nothing listens: every attempt fails, as in an outage.
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let app = spawn_app_with(|settings| {
        settings.smtp_url = Some(consento::settings::Secret::new(format!("smtp://127.0.0.1:{dead_port}")));
    })
    .await;
    let (_, list) = app.form_on_new_list("outage", "double", json!({})).await;
    app.submit_form("outage", &[("email", "patient@example.org"), ("consent", &list)]).await;

    // The worker tried, failed, and scheduled a retry; the mail is still queued.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let (attempts, error) = loop {
        let row: (i32, Option<String>, Option<chrono::NaiveDateTime>) = app
            .state
            .db
            .read(|conn| {
                use consento::storage::schema::outbox;
                Ok(outbox::table.select((outbox::attempts, outbox::last_error, outbox::sent_at)).first(conn)?)
            })
            .await
            .unwrap();
        assert!(row.2.is_none());
        if row.0 > 0 {
            break (row.0, row.1);
        }
        assert!(std::time::Instant::now() < deadline, "the worker never tried");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(attempts, 1);
    assert!(error.is_some());

    // The server is back (here: another one); the retry comes due and the mail goes out.
    // (The app's own worker still points at the dead port and may take a turn first:
    // then the mail is simply due again.)
    let server = MailServer::start();
    let transport = Transport::smtp(&format!("smtp://127.0.0.1:{}", server.port), 1).unwrap();
    let worker = OutboxWorker::new(app.state.db.clone(), transport, std::sync::Arc::new(tokio::sync::Notify::new()));
    let mut sent = 0;
    for _ in 0..10 {
        app.state
            .db
            .write(|conn| {
                use consento::storage::schema::outbox;
                diesel::update(outbox::table.filter(outbox::sent_at.is_null()))
                    .set(outbox::next_attempt_at.eq(chrono::Utc::now().naive_utc()))
                    .execute(conn)?;
                Ok(())
            })
            .await
            .unwrap();
        sent += worker.send_due().await.unwrap();
        if sent > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(sent, 1);
    let mail = &server.wait_for("patient@example.org", 1).await[0];
    assert!(mail.text().contains("/confirm/"));
    assert_eq!(worker.send_due().await.unwrap(), 0, "a sent mail is not sent again");
}
