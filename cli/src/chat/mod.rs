//! `weft chat`: the full-screen terminal chat. [`app`] is its state and what keys and events do
//! to it (no terminal, no node: tested directly); [`view`] draws that state (tested with
//! ratatui's test backend); `commands::chat` connects both to a node and a terminal.

pub mod app;
pub mod view;
