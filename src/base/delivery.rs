//! What providers tell recall after a send: a delivery receipt for a
//! message, or a customer's reply to the clinic's number. Senders read
//! these out of each provider's callback (`senders::<provider>::callback`);
//! the store records them (`store::receipts`). Plain data, no I/O.

/// What a receipt says became of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The handset (or inbox) has it.
    Delivered,
    /// The provider or the carrier gave up on it.
    Undelivered,
    /// An intermediate state (queued or sent on at the provider): it never
    /// overwrites a final one.
    InTransit,
}

/// One delivery receipt, as a provider's callback gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The sender (`[senders.NAME]`) whose callback received it.
    pub sender: String,
    /// The provider's id of the message (Aliyun BizId, Tencent SerialNo /
    /// sid, Twilio MessageSid), when the callback carries it.
    pub provider_id: Option<String>,
    /// recall's own id of the message, when the provider echoes it back
    /// (Aliyun OutId, Tencent ext / SessionContext).
    pub message_id: Option<i64>,
    /// What became of it.
    pub delivery: Delivery,
    /// The provider's status or error code, as it gave it (`DELIVRD`,
    /// `MK:0001`, `30003`).
    pub code: Option<String>,
    /// The provider's description of the code, when it gives one.
    pub description: Option<String>,
    /// When the provider says it happened (Unix seconds), or when the
    /// callback arrived if it does not say.
    pub at: i64,
}

/// One inbound message from a customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The sender (`[senders.NAME]`) whose callback received it.
    pub sender: String,
    /// The customer's number as the provider gave it (any form; the store
    /// reads it with `base::phone` in the clinic's country).
    pub phone: String,
    /// What the customer wrote.
    pub text: String,
    /// When the provider says it was sent (Unix seconds), or when the
    /// callback arrived.
    pub at: i64,
}
