//! `onsale-sim`: deterministic onsale simulation. Not built yet beyond the
//! workspace entry; the pure event core it will drive lives in
//! `onsale-actors`.
