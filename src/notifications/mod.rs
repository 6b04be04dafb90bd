//! Tenant notifications (SPEC §12). This first step is the transactional outbox: every event
//! is written by [`outbox::emit`] (or, on the metering path, by the same SQL statement that
//! records its cause) inside the transaction of its cause, so an event exists exactly when its
//! cause committed. Delivery (signed webhooks, e-mail) reads the outbox in `seq` order per
//! tenant. `mail` renders and sends an event's mail (called by the delivery worker).

pub mod mail;
pub mod outbox;
pub mod webhooks;
pub mod worker;
