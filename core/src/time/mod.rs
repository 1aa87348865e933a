//! Time limits: where the engine gets the time, working-day arithmetic on the office
//! calendar, warning levels, the stops that halt a limit's clock, and the timers that
//! fire supervision cards when a limit nears or passes.

pub mod calendar;
pub mod clock;
pub mod limits;
pub mod stops;
pub mod supervision;
