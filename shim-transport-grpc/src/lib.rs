//! Not yet implemented; see the project issues.
