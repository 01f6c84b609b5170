//! One module per subcommand.

pub mod bundle;
pub mod chat;
pub mod config;
pub mod contact;
pub mod demo;
pub mod device;
pub mod group;
pub mod id;
pub mod init;
pub mod keys;
pub mod message;
pub mod nearby;
pub mod panic;
pub mod passphrase;
pub mod relay;
pub mod run;
pub mod save;
pub mod settings;
pub mod sim;
pub mod status;
pub mod sync;
