//! Tests across the layers: two handshake machines in memory, and real
//! connections over loopback TCP.

mod loopback;
mod pair;
