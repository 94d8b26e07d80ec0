//! The built-in strings of pages and system mails, in English, French, German and Italian.
//! Text an admin wrote (form titles, consent texts) is shown as written.

use std::collections::BTreeMap;

/// Supported languages, in the order of the columns below.
pub const LOCALES: [&str; 4] = ["en", "fr", "de", "it"];

const STRINGS: &[(&str, [&str; 4])] = &[
    ("lang", ["en", "fr", "de", "it"]),
    ("email", ["E-mail address", "Adresse e-mail", "E-Mail-Adresse", "Indirizzo e-mail"]),
    ("company", ["Company", "Entreprise", "Unternehmen", "Azienda"]),
    ("required", ["required", "obligatoire", "Pflichtfeld", "obbligatorio"]),
    ("optional", ["optional", "facultatif", "optional", "facoltativo"]),
    ("subscribe", ["Subscribe", "S'abonner", "Abonnieren", "Iscriviti"]),
    ("choose", ["Choose…", "Choisir…", "Auswählen…", "Scegli…"]),
    ("consents", ["I agree to receive", "J'accepte de recevoir", "Ich möchte erhalten", "Accetto di ricevere"]),
    (
        "fix_errors",
        [
            "Please correct the marked fields.",
            "Veuillez corriger les champs indiqués.",
            "Bitte korrigieren Sie die markierten Felder.",
            "Correggi i campi indicati.",
        ],
    ),
    ("error", ["Error", "Erreur", "Fehler", "Errore"]),
    (
        "pending_title",
        [
            "Check your inbox",
            "Consultez votre boîte mail",
            "Bitte prüfen Sie Ihr Postfach",
            "Controlla la tua casella di posta",
        ],
    ),
    (
        "pending_text",
        [
            "We have sent you an e-mail with a link. Open it to confirm your subscription.",
            "Nous vous avons envoyé un e-mail avec un lien. Ouvrez-le pour confirmer votre abonnement.",
            "Wir haben Ihnen eine E-Mail mit einem Link geschickt. Öffnen Sie ihn, um Ihr Abonnement zu bestätigen.",
            "Ti abbiamo inviato un'e-mail con un link. Aprilo per confermare la tua iscrizione.",
        ],
    ),
    ("thanks_title", ["Thank you", "Merci", "Vielen Dank", "Grazie"]),
    ("thanks_text", ["You are subscribed.", "Vous êtes abonné.", "Sie sind angemeldet.", "Sei iscritto."]),
    (
        "confirm_title",
        [
            "Confirm your subscription",
            "Confirmez votre abonnement",
            "Bestätigen Sie Ihr Abonnement",
            "Conferma la tua iscrizione",
        ],
    ),
    (
        "confirm_text",
        [
            "Press the button to confirm that you want to receive:",
            "Appuyez sur le bouton pour confirmer que vous souhaitez recevoir :",
            "Drücken Sie die Schaltfläche, um zu bestätigen, dass Sie Folgendes erhalten möchten:",
            "Premi il pulsante per confermare che desideri ricevere:",
        ],
    ),
    ("confirm_button", ["Confirm", "Confirmer", "Bestätigen", "Conferma"]),
    (
        "confirmed_title",
        ["Subscription confirmed", "Abonnement confirmé", "Abonnement bestätigt", "Iscrizione confermata"],
    ),
    (
        "confirmed_text",
        [
            "Thank you, your subscription is confirmed.",
            "Merci, votre abonnement est confirmé.",
            "Vielen Dank, Ihr Abonnement ist bestätigt.",
            "Grazie, la tua iscrizione è confermata.",
        ],
    ),
    (
        "invalid_title",
        ["This link is not valid", "Ce lien n'est pas valide", "Dieser Link ist ungültig", "Questo link non è valido"],
    ),
    (
        "invalid_text",
        [
            "The link is not valid or has expired.",
            "Le lien n'est pas valide ou a expiré.",
            "Der Link ist ungültig oder abgelaufen.",
            "Il link non è valido o è scaduto.",
        ],
    ),
    ("unsubscribe_title", ["Unsubscribe", "Se désabonner", "Abmelden", "Annulla l'iscrizione"]),
    ("unsubscribe_from", ["Stop receiving:", "Ne plus recevoir :", "Nicht mehr erhalten:", "Non ricevere più:"]),
    ("all_mail", ["all our e-mails", "tous nos e-mails", "alle unsere E-Mails", "tutte le nostre e-mail"]),
    ("unsubscribe_button", ["Unsubscribe", "Me désabonner", "Abmelden", "Annulla l'iscrizione"]),
    (
        "unsubscribed_title",
        ["You are unsubscribed", "Vous êtes désabonné", "Sie sind abgemeldet", "La tua iscrizione è stata annullata"],
    ),
    (
        "unsubscribed_text",
        [
            "You will not receive these e-mails any more.",
            "Vous ne recevrez plus ces e-mails.",
            "Sie erhalten diese E-Mails nicht mehr.",
            "Non riceverai più queste e-mail.",
        ],
    ),
    ("preferences_title", ["Your preferences", "Vos préférences", "Ihre Einstellungen", "Le tue preferenze"]),
    (
        "preferences_lists",
        [
            "The e-mails you receive",
            "Les e-mails que vous recevez",
            "Die E-Mails, die Sie erhalten",
            "Le e-mail che ricevi",
        ],
    ),
    ("save", ["Save", "Enregistrer", "Speichern", "Salva"]),
    (
        "saved",
        [
            "Your preferences are saved.",
            "Vos préférences sont enregistrées.",
            "Ihre Einstellungen sind gespeichert.",
            "Le tue preferenze sono salvate.",
        ],
    ),
    (
        "leave_all",
        ["Unsubscribe from everything", "Me désabonner de tout", "Von allem abmelden", "Annulla tutte le iscrizioni"],
    ),
    ("your_data", ["Your data", "Vos données", "Ihre Daten", "I tuoi dati"]),
    ("download", ["Download my data", "Télécharger mes données", "Meine Daten herunterladen", "Scarica i miei dati"]),
    (
        "erase",
        ["Delete all my data", "Supprimer toutes mes données", "Alle meine Daten löschen", "Elimina tutti i miei dati"],
    ),
    (
        "erased_title",
        [
            "Your data is deleted",
            "Vos données sont supprimées",
            "Ihre Daten sind gelöscht",
            "I tuoi dati sono stati eliminati",
        ],
    ),
    (
        "erased_text",
        [
            "We have deleted your data and will not write to you again.",
            "Nous avons supprimé vos données et ne vous écrirons plus.",
            "Wir haben Ihre Daten gelöscht und schreiben Ihnen nicht mehr.",
            "Abbiamo eliminato i tuoi dati e non ti scriveremo più.",
        ],
    ),
    (
        "preference_box",
        [
            "Send me {list}. I can unsubscribe at any time.",
            "Envoyez-moi {list}. Je peux me désabonner à tout moment.",
            "Senden Sie mir {list}. Ich kann mich jederzeit abmelden.",
            "Inviatemi {list}. Posso annullare l'iscrizione in qualsiasi momento.",
        ],
    ),
    (
        "preference_pending",
        [
            "waiting for your confirmation",
            "en attente de votre confirmation",
            "wartet auf Ihre Bestätigung",
            "in attesa della tua conferma",
        ],
    ),
    (
        "preference_confirm_sent",
        [
            "We have sent you an e-mail: open its link to confirm the lists you ticked.",
            "Nous vous avons envoyé un e-mail : ouvrez son lien pour confirmer les listes cochées.",
            "Wir haben Ihnen eine E-Mail geschickt: Öffnen Sie den Link, um die angekreuzten Listen zu bestätigen.",
            "Ti abbiamo inviato un'e-mail: apri il link per confermare le liste selezionate.",
        ],
    ),
    (
        "your_data_text",
        [
            "To protect your data, we send the link that does this to your e-mail address. It works once.",
            "Pour protéger vos données, nous envoyons le lien qui le fait à votre adresse e-mail. Il ne sert qu'une fois.",
            "Zum Schutz Ihrer Daten senden wir den Link dafür an Ihre E-Mail-Adresse. Er funktioniert einmal.",
            "Per proteggere i tuoi dati, inviamo il link per farlo al tuo indirizzo e-mail. Funziona una sola volta.",
        ],
    ),
    (
        "request_download",
        [
            "Send me a link to download my data",
            "M'envoyer un lien pour télécharger mes données",
            "Mir einen Link zum Herunterladen meiner Daten senden",
            "Inviami un link per scaricare i miei dati",
        ],
    ),
    (
        "request_erase",
        [
            "Send me a link to delete all my data",
            "M'envoyer un lien pour supprimer toutes mes données",
            "Mir einen Link zum Löschen aller meiner Daten senden",
            "Inviami un link per eliminare tutti i miei dati",
        ],
    ),
    (
        "request_sent_text",
        [
            "We have sent you an e-mail with a link. Open it to carry out your request.",
            "Nous vous avons envoyé un e-mail avec un lien. Ouvrez-le pour donner suite à votre demande.",
            "Wir haben Ihnen eine E-Mail mit einem Link geschickt. Öffnen Sie ihn, um Ihre Anfrage auszuführen.",
            "Ti abbiamo inviato un'e-mail con un link. Aprilo per completare la tua richiesta.",
        ],
    ),
    (
        "download_mail_subject",
        [
            "Your request to download your data",
            "Votre demande de téléchargement de vos données",
            "Ihre Anfrage zum Herunterladen Ihrer Daten",
            "La tua richiesta di scaricare i tuoi dati",
        ],
    ),
    (
        "erase_mail_subject",
        [
            "Your request to delete your data",
            "Votre demande de suppression de vos données",
            "Ihre Anfrage zum Löschen Ihrer Daten",
            "La tua richiesta di eliminare i tuoi dati",
        ],
    ),
    (
        "data_mail_text",
        [
            "Hello,\n\nsomeone, probably you, asked for this from our preference centre. Open this link to do it (it works once):\n\n{link}\n\nIf you did not ask for this, ignore this e-mail: nothing will happen.\n",
            "Bonjour,\n\nquelqu'un, sans doute vous, l'a demandé depuis notre centre de préférences. Ouvrez ce lien pour le faire (il ne sert qu'une fois) :\n\n{link}\n\nSi vous n'avez rien demandé, ignorez cet e-mail : rien ne se passera.\n",
            "Guten Tag,\n\njemand, vermutlich Sie, hat dies in unserer Einstellungsseite angefordert. Öffnen Sie diesen Link, um es auszuführen (er funktioniert einmal):\n\n{link}\n\nWenn Sie das nicht angefordert haben, ignorieren Sie diese E-Mail: Es geschieht nichts.\n",
            "Buongiorno,\n\nqualcuno, probabilmente tu, lo ha chiesto dal nostro centro preferenze. Apri questo link per farlo (funziona una sola volta):\n\n{link}\n\nSe non hai richiesto nulla, ignora questa e-mail: non succederà nulla.\n",
        ],
    ),
    (
        "download_title",
        ["Download your data", "Télécharger vos données", "Ihre Daten herunterladen", "Scarica i tuoi dati"],
    ),
    (
        "download_text",
        [
            "Press the button to download everything we hold about you.",
            "Appuyez sur le bouton pour télécharger tout ce que nous détenons sur vous.",
            "Drücken Sie die Schaltfläche, um alles herunterzuladen, was wir über Sie speichern.",
            "Premi il pulsante per scaricare tutto ciò che conserviamo su di te.",
        ],
    ),
    ("erase_title", ["Delete your data", "Supprimer vos données", "Ihre Daten löschen", "Elimina i tuoi dati"]),
    (
        "erase_text",
        [
            "Press the button to delete everything we hold about you. We will not write to you again.",
            "Appuyez sur le bouton pour supprimer tout ce que nous détenons sur vous. Nous ne vous écrirons plus.",
            "Drücken Sie die Schaltfläche, um alles zu löschen, was wir über Sie speichern. Wir schreiben Ihnen nicht mehr.",
            "Premi il pulsante per eliminare tutto ciò che conserviamo su di te. Non ti scriveremo più.",
        ],
    ),
    ("too_many_title", ["Too many requests", "Trop de requêtes", "Zu viele Anfragen", "Troppe richieste"]),
    (
        "too_many_text",
        [
            "Please wait a moment and try again.",
            "Veuillez patienter un instant puis réessayer.",
            "Bitte warten Sie einen Moment und versuchen Sie es erneut.",
            "Attendi un momento e riprova.",
        ],
    ),
    ("not_found_title", ["Page not found", "Page introuvable", "Seite nicht gefunden", "Pagina non trovata"]),
    (
        "receipt_subject",
        [
            "Your consent receipt",
            "Votre reçu de consentement",
            "Ihre Einwilligungsquittung",
            "La tua ricevuta di consenso",
        ],
    ),
    (
        "receipt_intro",
        [
            "Hello,\n\nthank you for confirming. This is the receipt of your consent, for your records.",
            "Bonjour,\n\nmerci de votre confirmation. Voici le reçu de votre consentement, à conserver.",
            "Guten Tag,\n\nvielen Dank für Ihre Bestätigung. Dies ist die Quittung Ihrer Einwilligung für Ihre Unterlagen.",
            "Buongiorno,\n\ngrazie per la conferma. Questa è la ricevuta del tuo consenso, da conservare.",
        ],
    ),
    (
        "receipt_agreed",
        [
            "You agreed to the following, in these words:",
            "Vous avez accepté ce qui suit, dans ces termes :",
            "Sie haben Folgendem zugestimmt, mit diesem Wortlaut:",
            "Hai accettato quanto segue, con queste parole:",
        ],
    ),
    ("receipt_when", ["Confirmed on", "Confirmé le", "Bestätigt am", "Confermato il"]),
    ("receipt_who", ["Recorded by", "Enregistré par", "Erfasst von", "Registrato da"]),
    (
        "receipt_withdraw",
        [
            "You can withdraw at any time, with one click:",
            "Vous pouvez retirer votre consentement à tout moment, en un clic :",
            "Sie können Ihre Einwilligung jederzeit mit einem Klick widerrufen:",
            "Puoi revocare il consenso in qualsiasi momento, con un clic:",
        ],
    ),
    (
        "receipt_preferences",
        [
            "Or change your choices:",
            "Ou modifier vos choix :",
            "Oder Ihre Auswahl ändern:",
            "Oppure modifica le tue scelte:",
        ],
    ),
    (
        "receipt_proof",
        [
            "The proof of your consent, a file anyone can check against our signed consent ledger:",
            "La preuve de votre consentement, un fichier que chacun peut vérifier auprès de notre registre de consentements signé :",
            "Der Nachweis Ihrer Einwilligung, eine Datei, die jeder anhand unseres signierten Einwilligungsprotokolls prüfen kann:",
            "La prova del tuo consenso, un file che chiunque può verificare con il nostro registro dei consensi firmato:",
        ],
    ),
    (
        "form_not_found_text",
        [
            "There is no signup form at this address. Check the link you followed.",
            "Il n'y a pas de formulaire d'inscription à cette adresse. Vérifiez le lien suivi.",
            "Unter dieser Adresse gibt es kein Anmeldeformular. Bitte prüfen Sie den Link.",
            "Non c'è alcun modulo di iscrizione a questo indirizzo. Controlla il link che hai seguito.",
        ],
    ),
    ("too_large_title", ["Too much to send", "Envoi trop volumineux", "Zu viele Daten", "Invio troppo grande"]),
    (
        "too_large_text",
        [
            "What you sent is larger than this form accepts. Please shorten your answers and try again.",
            "Ce que vous avez envoyé dépasse ce que ce formulaire accepte. Raccourcissez vos réponses et réessayez.",
            "Ihre Angaben sind größer, als dieses Formular annimmt. Bitte kürzen Sie sie und versuchen Sie es erneut.",
            "Ciò che hai inviato supera quanto accetta questo modulo. Accorcia le risposte e riprova.",
        ],
    ),
    (
        "confirm_mail_subject",
        [
            "Please confirm your subscription",
            "Merci de confirmer votre abonnement",
            "Bitte bestätigen Sie Ihr Abonnement",
            "Conferma la tua iscrizione",
        ],
    ),
    (
        "confirm_mail_text",
        [
            "Hello,\n\nplease confirm that you want to receive {{ lists }} by opening this link:\n\n{{ confirm_url }}\n\nIf you did not ask for this, ignore this e-mail: you will not be subscribed.\n",
            "Bonjour,\n\nmerci de confirmer que vous souhaitez recevoir {{ lists }} en ouvrant ce lien :\n\n{{ confirm_url }}\n\nSi vous n'avez rien demandé, ignorez cet e-mail : vous ne serez pas abonné.\n",
            "Guten Tag,\n\nbitte bestätigen Sie, dass Sie {{ lists }} erhalten möchten, indem Sie diesen Link öffnen:\n\n{{ confirm_url }}\n\nWenn Sie das nicht angefordert haben, ignorieren Sie diese E-Mail: Sie werden nicht angemeldet.\n",
            "Buongiorno,\n\nconferma che desideri ricevere {{ lists }} aprendo questo link:\n\n{{ confirm_url }}\n\nSe non hai richiesto nulla, ignora questa e-mail: non verrai iscritto.\n",
        ],
    ),
    (
        "partners_legend",
        [
            "Also share my details with (optional, each on its own)",
            "Transmettre aussi mes coordonnées à (facultatif, chacun séparément)",
            "Meine Angaben auch weitergeben an (optional, jeweils einzeln)",
            "Condividi i miei dati anche con (facoltativo, ciascuno separatamente)",
        ],
    ),
    (
        "privacy_policy",
        ["privacy policy", "politique de confidentialité", "Datenschutzerklärung", "informativa sulla privacy"],
    ),
    (
        "survey_invite",
        [
            "Answer a few short questions",
            "Répondre à quelques questions",
            "Ein paar kurze Fragen beantworten",
            "Rispondi a qualche breve domanda",
        ],
    ),
    ("survey_next", ["Next", "Suivant", "Weiter", "Avanti"]),
    (
        "survey_done_title",
        [
            "Thank you for your answers",
            "Merci pour vos réponses",
            "Vielen Dank für Ihre Antworten",
            "Grazie per le tue risposte",
        ],
    ),
    (
        "survey_done_text",
        [
            "They help us send you what interests you.",
            "Elles nous aident à vous envoyer ce qui vous intéresse.",
            "Sie helfen uns, Ihnen zu schicken, was Sie interessiert.",
            "Ci aiutano a inviarti ciò che ti interessa.",
        ],
    ),
    (
        "partner_share",
        [
            "Share my e-mail address and profile with",
            "Transmettre mon adresse e-mail et mon profil à",
            "Meine E-Mail-Adresse und mein Profil weitergeben an",
            "Condividi il mio indirizzo e-mail e il mio profilo con",
        ],
    ),
    (
        "partner_privacy_policy",
        ["Privacy policy:", "Politique de confidentialité :", "Datenschutzerklärung:", "Informativa sulla privacy:"],
    ),
    ("sharing_with", ["sharing with", "partage avec", "Weitergabe an", "condivisione con"]),
    ("yes", ["Yes", "Oui", "Ja", "Sì"]),
    ("no", ["No", "Non", "Nein", "No"]),
];

fn column(locale: &str) -> usize {
    LOCALES.iter().position(|l| *l == locale).unwrap_or(0)
}

/// A built-in string; English when the locale is not supported.
pub fn text(locale: &str, key: &str) -> &'static str {
    STRINGS.iter().find(|(k, _)| *k == key).map_or("", |(_, texts)| texts[column(locale)])
}

/// Every built-in string of a locale, for page templates.
pub fn strings(locale: &str) -> BTreeMap<&'static str, &'static str> {
    let column = column(locale);
    STRINGS.iter().map(|(key, texts)| (*key, texts[column])).collect()
}

/// The words beside a partner's box, in the page's language. The page shows them and the
/// ledger keeps them as the consent text, so what is stored is what was read: both come
/// from here and nowhere else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerConsentText {
    /// Everything up to the privacy policy's address, which ends the text so that the page
    /// can make it a link without adding a word.
    pub lead: String,
    pub privacy_policy_url: String,
}

impl PartnerConsentText {
    pub fn new(locale: &str, name: &str, legal_name: &str, description: &str, privacy_policy_url: &str) -> Self {
        let lead = format!(
            "{} {name} ({legal_name}): {description} {} ",
            text(locale, "partner_share"),
            text(locale, "partner_privacy_policy")
        );
        Self { lead, privacy_policy_url: privacy_policy_url.to_owned() }
    }

    /// The whole text, as the page reads.
    pub fn text(&self) -> String {
        format!("{}{}", self.lead, self.privacy_policy_url)
    }
}

/// The first supported language of an `Accept-Language` header, by quality; else English.
pub fn negotiate(accept_language: Option<&str>) -> &'static str {
    let mut ranges: Vec<(f32, &str)> = accept_language
        .unwrap_or("")
        .split(',')
        .filter_map(|part| {
            let mut pieces = part.trim().split(';');
            let tag = pieces.next()?.trim();
            let quality = pieces.find_map(|p| p.trim().strip_prefix("q=")).and_then(|q| q.parse().ok()).unwrap_or(1.0);
            Some((quality, tag))
        })
        .collect();
    ranges.sort_by(|a, b| b.0.total_cmp(&a.0));
    ranges
        .into_iter()
        .filter(|(quality, _)| *quality > 0.0)
        .find_map(|(_, tag)| {
            let primary = tag.split('-').next().unwrap_or("").to_ascii_lowercase();
            LOCALES.iter().find(|l| **l == primary).copied()
        })
        .unwrap_or("en")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_string_exists_in_every_language() {
        for (key, texts) in STRINGS {
            assert!(texts.iter().all(|t| !t.is_empty()), "{key} lacks a translation");
        }
    }

    #[test]
    fn a_partner_box_reads_in_the_pages_language_and_ends_with_its_privacy_policy() {
        let text = PartnerConsentText::new("it", "Acme", "Acme SpA", "Offerte.", "https://acme.example/privacy");
        assert_eq!(
            text.text(),
            "Condividi il mio indirizzo e-mail e il mio profilo con Acme (Acme SpA): Offerte. Informativa sulla \
             privacy: https://acme.example/privacy"
        );
        assert!(text.text().starts_with(&text.lead));
    }

    #[test]
    fn accept_language_picks_the_best_supported_language() {
        assert_eq!(negotiate(Some("de-CH,de;q=0.9,en;q=0.8")), "de");
        assert_eq!(negotiate(Some("es-ES,it;q=0.5,fr;q=0.7")), "fr");
        assert_eq!(negotiate(Some("ja")), "en");
        assert_eq!(negotiate(None), "en");
    }
}
