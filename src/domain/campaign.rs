//! What a campaign is, as the send policy sees it.

use super::consent::string_enum;

string_enum! {
    /// Whom a campaign addresses: consumers, or businesses (where the opt-out regime
    /// may apply to professional and role addresses).
    CampaignKind {
        B2c = "b2c",
        B2b = "b2b",
    }
}

string_enum! {
    /// What a campaign is for, as the send policy sees it.
    CampaignPurpose {
        /// Marketing to those who agreed.
        Marketing = "marketing",
        /// The seller's own similar products: soft opt-in counts (B2C).
        SimilarProducts = "similar_products",
        /// Asking imported contacts without valid consent to opt in.
        RePermission = "re_permission",
    }
}

string_enum! {
    /// Where a campaign is in its life: a draft is scheduled, its audience prepared (judged
    /// by the send policy), then sent; a send may be paused and resumed; anything not sent
    /// yet may be cancelled.
    CampaignStatus {
        Draft = "draft",
        Scheduled = "scheduled",
        /// The audience is being checked against the send policy.
        Preparing = "preparing",
        Sending = "sending",
        Paused = "paused",
        Sent = "sent",
        Cancelled = "cancelled",
    }
}

impl CampaignStatus {
    /// Its content may still change, and it may be scheduled (again).
    pub fn is_editable(self) -> bool {
        matches!(self, Self::Draft | Self::Scheduled)
    }

    /// A dispatcher has work to do for it.
    pub fn is_in_flight(self) -> bool {
        matches!(self, Self::Scheduled | Self::Preparing | Self::Sending)
    }
}

string_enum! {
    /// What a user may do to a campaign once it was scheduled.
    CampaignCommand {
        Pause = "pause",
        Resume = "resume",
        Cancel = "cancel",
    }
}

impl CampaignCommand {
    /// The statuses it applies to, and the one it moves a campaign to.
    pub fn transition(self) -> (&'static [CampaignStatus], CampaignStatus) {
        use CampaignStatus::*;
        match self {
            Self::Pause => (&[Sending, Preparing], Paused),
            Self::Resume => (&[Paused], Sending),
            Self::Cancel => (&[Draft, Scheduled, Preparing, Sending, Paused], Cancelled),
        }
    }

    /// What it does, said of the campaign ("it cannot be paused").
    pub fn done(self) -> &'static str {
        match self {
            Self::Pause => "paused",
            Self::Resume => "resumed",
            Self::Cancel => "cancelled",
        }
    }
}

string_enum! {
    /// One recipient of a campaign: waiting to be sent, sent, failed for good, excluded by
    /// the send policy, or cancelled with the campaign.
    RecipientStatus {
        Pending = "pending",
        Sent = "sent",
        Failed = "failed",
        Excluded = "excluded",
        Cancelled = "cancelled",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_moves_a_campaign_only_from_where_it_may() {
        use CampaignStatus::*;
        for status in CampaignStatus::ALL.iter().copied() {
            let (from, to) = CampaignCommand::Cancel.transition();
            assert_eq!(from.contains(&status), !matches!(status, Sent | Cancelled), "cancel from {status}");
            assert_eq!(to, Cancelled);
        }
        assert_eq!(CampaignCommand::Pause.transition(), (&[Sending, Preparing][..], Paused));
        assert_eq!(CampaignCommand::Resume.transition(), (&[Paused][..], Sending));
        // Nothing moves a campaign out of an end.
        for command in CampaignCommand::ALL {
            let (from, _) = command.transition();
            assert!(!from.contains(&Sent) && !from.contains(&Cancelled), "{command} from an end");
        }
    }

    #[test]
    fn only_a_draft_or_a_scheduled_campaign_changes_and_only_live_ones_are_dispatched() {
        let editable: Vec<_> = CampaignStatus::ALL.iter().filter(|s| s.is_editable()).map(|s| s.as_str()).collect();
        assert_eq!(editable, ["draft", "scheduled"]);
        let in_flight: Vec<_> = CampaignStatus::ALL.iter().filter(|s| s.is_in_flight()).map(|s| s.as_str()).collect();
        assert_eq!(in_flight, ["scheduled", "preparing", "sending"]);
        assert_eq!("paused".parse::<CampaignStatus>(), Ok(CampaignStatus::Paused));
        assert!("unknown".parse::<CampaignStatus>().is_err());
    }
}
