//! Commands, replies and pushes: what fans, gateways and operators say to
//! an event, and what it says back. The event core returns these types
//! directly, so a reply is defined once, here.
//!
//! Business outcomes (a full waiting room, a taken seat) are values, each
//! with a stable [`ErrorCode`].

use serde::{Deserialize, Serialize};

use crate::config::SaleState;
use crate::error::ErrorCode;
use crate::ids::{
    EventId, FanId, HoldId, Millis, OrderId, PaymentId, Position, PriceLevelIdx, SeatIdx,
    SectionIdx,
};

/// Defines a message enum with two serde forms. In JSON (what the gateway
/// and the fan page speak) it is internally tagged: `{"cmd":"join","fan":7}`.
/// In the binary codec it is externally tagged (variant index, then
/// fields), because bincode cannot decode internally tagged enums: they
/// need `deserialize_any`. Each form is derived once on a private mirror
/// (serde `remote`), and `is_human_readable` picks between them.
macro_rules! message_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident as $remote:literal, tag = $tag:literal { $($body:tt)* }
    ) => {
        $(#[$meta])*
        pub enum $name { $($body)* }

        const _: () = {
            #[allow(dead_code)]
            #[derive(Serialize, Deserialize)]
            #[serde(remote = $remote, tag = $tag, rename_all = "snake_case")]
            enum Text { $($body)* }

            #[allow(dead_code)]
            #[derive(Serialize, Deserialize)]
            #[serde(remote = $remote)]
            enum Binary { $($body)* }

            impl Serialize for $name {
                fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                    if s.is_human_readable() {
                        Text::serialize(self, s)
                    } else {
                        Binary::serialize(self, s)
                    }
                }
            }

            impl<'de> Deserialize<'de> for $name {
                fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                    if d.is_human_readable() {
                        Text::deserialize(d)
                    } else {
                        Binary::deserialize(d)
                    }
                }
            }
        };
    };
}

message_enum! {
    /// Where a fan stands with one event.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub enum FanStatus as "FanStatus", tag = "status" {
        /// In the waiting room. `ahead` estimates the fans still in front.
        Waiting { position: Position, ahead: u64 },
        /// Admitted: may browse and hold until `shopping_until`.
        Admitted {
            position: Position,
            shopping_until: Millis,
        },
        /// Holding seats until `deadline` (or paying, past it).
        Holding {
            hold: HoldId,
            deadline: Millis,
            paying: bool,
        },
        /// Bought tickets (`order`, its `seats`); the turn is over.
        Purchased {
            tickets: u8,
            order: OrderId,
            seats: Vec<SeatIdx>,
        },
        /// The turn lapsed (no show, or no hold in the shopping window).
        Expired,
        /// Left the waiting room.
        Left,
        /// In the pre-queue: a position is drawn for it when the sale
        /// opens (at `opens_at` if the sale opens by itself). Last, so
        /// that the binary form of the others is unchanged.
        PreQueued { opens_at: Option<Millis> },
    }
}

/// A successful join or resume.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Joined {
    pub position: Position,
    /// False when the fan was already known (idempotent rejoin or resume).
    pub fresh: bool,
    pub status: FanStatus,
}

/// Why a fan could not join (or resume).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JoinRefused {
    Full,
    SoldOut,
    Closed,
    TicketLimit,
    /// The counter is waiting for its next durable block, or the core is at
    /// its fan limit: retry shortly.
    Busy,
    /// A resume token whose position this event never handed out.
    InvalidToken,
    /// The event is in its presale and the fan came without a code.
    CodeRequired,
    /// The fan's presale code already made its place (the fan comes back
    /// with its queue token instead).
    CodeUsed,
}

impl JoinRefused {
    #[must_use]
    pub fn code(self) -> ErrorCode {
        match self {
            JoinRefused::Full => ErrorCode::WaitingRoomFull,
            JoinRefused::SoldOut => ErrorCode::SoldOut,
            JoinRefused::Closed => ErrorCode::SaleClosed,
            JoinRefused::TicketLimit => ErrorCode::TicketLimit,
            JoinRefused::Busy => ErrorCode::Busy,
            JoinRefused::InvalidToken => ErrorCode::InvalidToken,
            JoinRefused::CodeRequired => ErrorCode::PresaleCodeRequired,
            JoinRefused::CodeUsed => ErrorCode::PresaleCodeUsed,
        }
    }
}

message_enum! {
    /// Where best-available seats are sought.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Area as "Area", tag = "in" {
        Section { section: SectionIdx },
        PriceLevel { price_level: PriceLevelIdx },
        Anywhere,
    }
}

message_enum! {
    /// What a fan asks to hold. All or nothing.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub enum HoldRequest as "HoldRequest", tag = "kind" {
        /// These exact seats.
        Seats { seats: Vec<SeatIdx> },
        /// The best `count` adjacent seats in one row of the area.
        Best { count: u8, area: Area },
    }
}

/// Seats held for a fan until `deadline`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldPlaced {
    pub hold: HoldId,
    pub seats: Vec<SeatIdx>,
    pub deadline: Millis,
    pub total_cents: u64,
}

message_enum! {
    /// Why a hold was refused. Nothing was held.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub enum HoldRejected as "HoldRejected", tag = "reason" {
        NotInLine,
        NotAdmitted,
        AdmissionExpired,
        SaleNotOpen,
        SoldOut,
        AlreadyHolding {
            hold: HoldId,
        },
        /// Empty, duplicated or too many seats.
        BadRequest,
        UnknownSeat {
            seat: SeatIdx,
        },
        UnknownArea,
        /// Over the fan's ticket limit: at most `max` more tickets.
        TicketLimit {
            max: u8,
        },
        /// Fans admitted behind this one each keep a claim on one ticket:
        /// at most `max` tickets can be held now.
        FairShare {
            max: u32,
        },
        /// Some seats are taken. `alternative` is the nearest available block
        /// of the same size (same row first, then nearer rows), if any.
        SeatsUnavailable {
            taken: Vec<SeatIdx>,
            alternative: Option<Vec<SeatIdx>>,
        },
        /// No row in the area has that many adjacent seats free.
        NotEnoughSeats,
    }
}

impl HoldRejected {
    #[must_use]
    pub fn code(&self) -> ErrorCode {
        match self {
            HoldRejected::NotInLine => ErrorCode::NotInLine,
            HoldRejected::NotAdmitted => ErrorCode::NotAdmitted,
            HoldRejected::AdmissionExpired => ErrorCode::AdmissionExpired,
            HoldRejected::SaleNotOpen => ErrorCode::SaleNotOpen,
            HoldRejected::SoldOut => ErrorCode::SoldOut,
            HoldRejected::AlreadyHolding { .. } => ErrorCode::AlreadyHolding,
            HoldRejected::BadRequest => ErrorCode::BadRequest,
            HoldRejected::UnknownSeat { .. } => ErrorCode::UnknownSeat,
            HoldRejected::UnknownArea => ErrorCode::UnknownSection,
            HoldRejected::TicketLimit { .. } => ErrorCode::TicketLimit,
            HoldRejected::FairShare { .. } => ErrorCode::FairShare,
            HoldRejected::SeatsUnavailable { .. } => ErrorCode::SeatsUnavailable,
            HoldRejected::NotEnoughSeats => ErrorCode::NotEnoughSeats,
        }
    }
}

/// A payment sent to the provider for a hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentStarted {
    pub payment: PaymentId,
    pub hold: HoldId,
    pub amount_cents: u64,
}

/// Why a payment (or a release) was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentRefused {
    HoldNotFound,
    /// The checkout deadline passed first; the seats were released.
    Late,
    /// A payment for this hold is already with the provider.
    Pending,
}

impl PaymentRefused {
    #[must_use]
    pub fn code(self) -> ErrorCode {
        match self {
            PaymentRefused::HoldNotFound => ErrorCode::HoldNotFound,
            PaymentRefused::Late => ErrorCode::PaymentLate,
            PaymentRefused::Pending => ErrorCode::PaymentPending,
        }
    }
}

/// Why a fan's payment did not go through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeclineReason {
    /// The provider declined the charge.
    Declined,
    /// The provider never answered, not even when asked, within the
    /// event's provider timeout: the payment was voided (any money taken
    /// later is refunded).
    NoAnswer,
}

/// The provider's answer to a payment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderAnswer {
    Confirmed,
    Declined,
}

message_enum! {
    /// What the event made of a provider's answer.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum PaymentSettled as "PaymentSettled", tag = "result" {
        /// The seats are sold (also returned again for a duplicate answer).
        Sold { order: OrderId },
        /// Declined; the fan may pay again until `deadline`, else the seats go.
        Declined {
            hold: HoldId,
            retry_until: Option<Millis>,
        },
        /// Confirmed after the payment was voided: the money must be refunded.
        Refund { payment: PaymentId },
        /// A duplicate decline, or an answer for a payment already settled.
        Ignored,
        /// No such payment.
        Unknown,
    }
}

/// A section's availability at a glance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SectionSummary {
    pub section: SectionIdx,
    pub seats: u32,
    pub available: u32,
    pub price_min_cents: u64,
    pub price_max_cents: u64,
}

/// An event's public state: sale state and section summaries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventOverview {
    pub event: EventId,
    pub sale: SaleState,
    pub capacity: u32,
    pub sold: u32,
    pub held: u32,
    pub waiting: u64,
    pub full: bool,
    pub admitted_through: Position,
    pub sections: Vec<SectionSummary>,
    /// The proof of work a join needs now (leading zero bits; 0: none).
    #[serde(default)]
    pub stamp_bits: u8,
}

/// Seat-level availability of one section: bit `i` of `available` is the
/// seat `first_seat + i` (least significant bit first).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SectionSeats {
    pub section: SectionIdx,
    pub first_seat: SeatIdx,
    pub seat_count: u32,
    pub available: Vec<u8>,
}

impl SectionSeats {
    #[must_use]
    pub fn is_available(&self, seat: SeatIdx) -> bool {
        let Some(i) = seat.0.checked_sub(self.first_seat.0) else {
            return false;
        };
        if i >= self.seat_count {
            return false;
        }
        self.available
            .get((i / 8) as usize)
            .is_some_and(|byte| byte & (1 << (i % 8)) != 0)
    }
}

impl Reply {
    /// The stable error code of a reply that is an error (`Error` and
    /// `NotOwner`); `None` for every answer from the event.
    #[must_use]
    pub fn error_code(&self) -> Option<ErrorCode> {
        match self {
            Reply::Error { code, .. } => Some(*code),
            Reply::NotOwner { .. } => Some(ErrorCode::NotOwner),
            _ => None,
        }
    }

    /// An error reply with a stable code and a human message.
    #[must_use]
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Reply {
        Reply::Error {
            code,
            message: message.into(),
        }
    }
}

/// The result of an audit: `problem` names the first broken invariant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Audit {
    pub problem: Option<String>,
    pub journal_seq: u64,
    pub next_position: Position,
    pub orders: Vec<crate::snapshot::OrderRecord>,
}

/// An operator's command to an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SaleCommand {
    Open,
    Pause,
    Close,
}

message_enum! {
    /// Everything a gateway or operator can ask of an event actor.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub enum Command as "Command", tag = "cmd" {
        Join {
            fan: FanId,
        },
        Resume {
            fan: FanId,
            token: String,
        },
        Leave {
            fan: FanId,
        },
        /// An admitted fan showed up (opened the seat map).
        Enter {
            fan: FanId,
        },
        Status {
            fan: FanId,
        },
        Overview,
        SectionSeats {
            section: SectionIdx,
        },
        Hold {
            fan: FanId,
            request: HoldRequest,
        },
        Release {
            fan: FanId,
            hold: HoldId,
        },
        SubmitPayment {
            fan: FanId,
            hold: HoldId,
        },
        ProviderAnswer {
            payment: PaymentId,
            answer: ProviderAnswer,
        },
        Sale {
            command: SaleCommand,
        },
        /// An operator's audit: the event checks every invariant and lists
        /// its orders.
        Audit,
        /// A fan joins with its presale code (needed while the event's
        /// presale lasts; a plain join after it).
        JoinWithCode {
            fan: FanId,
            code: String,
        },
        /// An operator sets the proof of work joins need (bits, at most
        /// `limits::STAMP_BITS_MAX`; 0: none but the automatic rule's).
        SetStamp {
            bits: u8,
        },
    }
}

message_enum! {
    /// The answer to a [`Command`].
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub enum Reply as "Reply", tag = "reply" {
        Joined { joined: Joined, token: String },
        JoinRefused { refused: JoinRefused },
        Status { status: Option<FanStatus> },
        Overview { overview: EventOverview },
        SectionSeats { seats: SectionSeats },
        HoldPlaced { placed: HoldPlaced },
        HoldRejected { rejected: HoldRejected },
        Released,
        PaymentStarted { started: PaymentStarted },
        PaymentRefused { refused: PaymentRefused },
        PaymentSettled { settled: PaymentSettled },
        Sale { state: SaleState },
        Audit { audit: Audit },
        Error { code: ErrorCode, message: String },
        /// This node does not own the event: `owner` does (code
        /// `not_owner`). Given by the node, never by the event.
        NotOwner { owner: EventOwner },
        /// A node's own account of itself, for operators (asked over the
        /// mesh). Given by the node, never by the event.
        NodeStatus { status: NodeStatus },
        /// The proof of work joins need: the operator's setting (`set`)
        /// and what is asked now (`bits`, the automatic rule's if higher).
        Stamp { set: u8, bits: u8 },
    }
}

/// What a node says of itself when operators ask (over the mesh).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub node: String,
    /// Whether it owns events (role `node`); a gateway owns none.
    pub owns_events: bool,
    /// Fan websockets open on it now.
    pub fans: u64,
    /// Events it serves now.
    pub serving: u32,
    /// The overview of each event it serves, by event, without section
    /// summaries (a node may serve thousands of events); empty unless
    /// asked for.
    pub events: Vec<EventOverview>,
}

/// The node that owns an event, as a node that does not own it last saw
/// the event's lease: where a request for the event belongs. A newer
/// `epoch` always means a newer owner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventOwner {
    /// The owner's node name (its `--node`).
    pub node: String,
    /// The owner's lease epoch (its fencing token).
    pub epoch: u64,
    /// When that lease expires unless its owner renews it (wall clock).
    /// Past it, another node may take the event over.
    pub lease_expires: Millis,
}

message_enum! {
    /// What an event tells gateways (and they, their fans) without being asked.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub enum Push as "Push", tag = "push" {
        /// Every waiting fan at or below this position has been admitted;
        /// the event decided so at `decided_at` (its clock).
        AdmittedThrough {
            position: Position,
            decided_at: Millis,
        },
        /// One fan admitted below the last `AdmittedThrough` (a fan who
        /// resumed or came back to an early position).
        FanAdmitted {
            fan: FanId,
            position: Position,
            decided_at: Millis,
        },
        /// The waiting room turned full (or stopped being full).
        Full {
            full: bool,
        },
        SoldOut,
        Sale {
            state: SaleState,
        },
        /// Seats of one section changed availability.
        SeatsChanged {
            section: SectionIdx,
            seats: Vec<SeatIdx>,
            available: bool,
        },
        /// To one fan: its hold ends soon / ended / its turn lapsed / it bought.
        HoldExpiring {
            fan: FanId,
            hold: HoldId,
            deadline: Millis,
        },
        HoldExpired {
            fan: FanId,
            hold: HoldId,
        },
        AdmissionExpired {
            fan: FanId,
        },
        Purchased {
            fan: FanId,
            order: OrderId,
            seats: Vec<SeatIdx>,
        },
        /// To one fan: its payment did not go through (`reason`: declined
        /// by the provider, or voided after the provider never answered).
        /// The hold stands until `retry_until` (pay again); with `None`
        /// the hold is released (`HoldExpired` follows).
        PaymentDeclined {
            fan: FanId,
            hold: HoldId,
            retry_until: Option<Millis>,
            reason: DeclineReason,
        },
        /// The opening's draw gave these pre-queued fans their positions
        /// (at most [`limits::DRAWN_PER_PUSH_MAX`] per push, in position
        /// order).
        ///
        /// [`limits::DRAWN_PER_PUSH_MAX`]: crate::limits::DRAWN_PER_PUSH_MAX
        Drawn {
            fans: Vec<(FanId, Position)>,
        },
        /// The proof of work a join needs changed (bits; 0: none).
        Stamp {
            bits: u8,
        },
    }
}
