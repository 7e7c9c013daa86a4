//! Scenario tests over a five-peer fixture, and property tests over random
//! event sequences. See `harness` for the fixture.

mod broadcast;
mod harness;
mod invalidation;
mod learning;
mod props;
mod sleeve;
mod staleness;
mod unicast;
