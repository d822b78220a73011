//! Pageview events and their sources.
