//! The command line, declared: every subcommand and flag with its help text (clap's
//! derive). `wxdesk-local --help`, `wxdesk-local <command> --help` and `--version` come
//! from here. Usage errors exit 2, failures 1, success 0.

use clap::{Args, Parser, Subcommand};

/// Every wxdesk route on one port, on the embedded store or AWS, and the commands that
/// operate it.
#[derive(Debug, Parser)]
#[command(name = "wxdesk-local", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// With no command: serve.
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The config file (TOML; start from wxdesk.example.toml).
    #[arg(long, value_name = "FILE")]
    pub config: Option<String>,
    /// The address to listen on, instead of the config's `[server] listen`.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
}

#[derive(Debug, Args)]
pub struct ConfigArg {
    /// The config file (TOML; start from wxdesk.example.toml).
    #[arg(long, value_name = "FILE")]
    pub config: String,
}

#[derive(Debug, Args)]
pub struct ServerArg {
    /// The running server that holds the embedded store (loopback only); by default the
    /// address it recorded in the store's directory.
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve every route (the default when no command is given).
    Serve(ServeArgs),
    /// Validate the config: every key, URL, cipher and limit (no store is opened).
    Check(ConfigArg),
    /// Print every URL to paste into a console, keys filled in (no store is opened).
    Urls {
        #[command(flatten)]
        config: ConfigArg,
        /// Only this account.
        #[arg(long, value_name = "APPID")]
        app: Option<String>,
        /// The public base URL (API Gateway's, or a reverse proxy's); by default
        /// http://{[server] listen}.
        #[arg(long, value_name = "URL")]
        base: Option<String>,
    },
    /// Print the page a shop's administrator opens to authorize the third-party platform
    /// (`[component]` with its `public_base_url`, the entry domain); exits 1 without one.
    AuthorizeUrl(ConfigArg),
    /// Check each account end to end: credentials, desk, routes; exits 1 if any fails.
    Doctor {
        #[command(flatten)]
        config: ConfigArg,
        /// Only this account.
        #[arg(long, value_name = "APPID")]
        app: Option<String>,
        #[command(flatten)]
        server: ServerArg,
    },
    /// The outbox: what is waiting, what died, and sending it again.
    Outbox {
        #[command(subcommand)]
        command: OutboxCommand,
    },
    /// The accounts the store holds (shops that authorized the platform, accounts added
    /// with their own credentials): changed without a redeploy or restart, in force in
    /// every process within `[registry] cache_secs`. On the aws store these use your own
    /// AWS credentials; beside a running local server they ask it (`[server] admin_key`).
    Accounts {
        #[command(subcommand)]
        command: AccountsCommand,
    },
    /// Play WeChat: send one customer text to a running wxdesk and print what WeChat got.
    Simulate {
        #[command(flatten)]
        config: ConfigArg,
        /// The account the customer writes to.
        #[arg(long, value_name = "APPID")]
        app: String,
        /// What the customer writes.
        #[arg(long)]
        text: String,
        /// The wxdesk to send it to.
        #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:8080")]
        url: String,
        /// The customer's openid.
        #[arg(long, default_value = "oSimulatedCustomer0000000000")]
        openid: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum OutboxCommand {
    /// List entries, the most overdue first.
    List {
        #[command(flatten)]
        config: ConfigArg,
        /// Only this account.
        #[arg(long, value_name = "APPID")]
        app: Option<String>,
        /// Which shelf.
        #[arg(long, default_value = "pending", value_parser = ["pending", "dead", "in_flight", "all"])]
        state: String,
        #[command(flatten)]
        server: ServerArg,
    },
    /// Queue an entry again (by the key `outbox list` prints), or every dead one.
    Replay {
        #[command(flatten)]
        config: ConfigArg,
        /// The entry's key.
        #[arg(required_unless_present = "dead", conflicts_with = "dead")]
        key: Option<String>,
        /// Every dead entry (of one account with --app).
        #[arg(long)]
        dead: bool,
        /// With --dead: only this account.
        #[arg(long, value_name = "APPID", requires = "dead")]
        app: Option<String>,
        #[command(flatten)]
        server: ServerArg,
    },
}

/// The arguments of an `accounts` command on one account.
#[derive(Debug, Args)]
pub struct OneAccount {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The account.
    #[arg(long, value_name = "APPID")]
    pub app: String,
    #[command(flatten)]
    pub server: ServerArg,
}

#[derive(Debug, Subcommand)]
pub enum AccountsCommand {
    /// Add or update one: a file with an `[[apps]]` entry's keys (its own token and
    /// secret, and a `[desk]`), or a shop's `appid` with any of `name`, `kind` and `[desk]`.
    Add {
        #[command(flatten)]
        config: ConfigArg,
        /// The account's TOML file (16 KiB at most).
        #[arg(long, value_name = "FILE")]
        file: String,
        #[command(flatten)]
        server: ServerArg,
    },
    /// List them: appid, standing, whose credentials, whose desk.
    List {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        server: ServerArg,
    },
    /// Close one: its routes answer 404, its queued messages are told back to its desk.
    Disable(OneAccount),
    /// Open a disabled one again.
    Enable(OneAccount),
    /// Give one a new gateway key (the old one is still taken until the next rotation)
    /// and print its URLs.
    RotateKey {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long, value_name = "APPID")]
        app: String,
        /// The public base URL the printed URLs start with.
        #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:8080")]
        base: String,
        #[command(flatten)]
        server: ServerArg,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_declaration_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn no_command_serves_and_replay_takes_a_key_or_dead() {
        let cli = Cli::try_parse_from(["wxdesk-local", "--config", "f.toml"]).unwrap();
        assert!(cli.command.is_none() && cli.serve.config.as_deref() == Some("f.toml"));
        let both = [
            "wxdesk-local",
            "outbox",
            "replay",
            "--config",
            "f",
            "k",
            "--dead",
        ];
        assert!(Cli::try_parse_from(both).is_err());
        let none = ["wxdesk-local", "outbox", "replay", "--config", "f"];
        assert!(Cli::try_parse_from(none).is_err());
        let dead = [
            "wxdesk-local",
            "outbox",
            "replay",
            "--config",
            "f",
            "--dead",
        ];
        assert!(Cli::try_parse_from(dead).is_ok());
        let state = [
            "wxdesk-local",
            "outbox",
            "list",
            "--config",
            "f",
            "--state",
            "gone",
        ];
        assert_eq!(
            Cli::try_parse_from(state).unwrap_err().exit_code(),
            2,
            "a usage error exits 2"
        );
    }
}
