//! A service owner's set-up from the command line: `broker serviceowner register|show` and
//! `broker resource set|show`, so configuring a resource needs no hand-written HTTP.

use super::{api_error, print_json, ClientArgs};
use broker_protocol::resource::{ResourceConfiguration, ResourceUpdate};
use broker_protocol::size::{human, parse_positive_size};

#[derive(clap::Subcommand, Debug)]
pub enum ServiceOwnerCommand {
    /// Register the token's organisation as a service owner (needs altinn:serviceowner).
    Register {
        /// The name shown for the service owner.
        #[arg(long)]
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show the token's service owner.
    Show {
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum ResourceCommand {
    /// Configure a resource (the first service owner to configure an id owns it, in registry mode
    /// `open`); options left out keep their value. Prints the resulting configuration.
    Set(ResourceSetArgs),
    /// Show a resource's configuration.
    Show {
        /// The resource id.
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(clap::Args, Debug)]
pub struct ResourceSetArgs {
    /// The resource id (letters, digits, - and _).
    pub id: String,
    /// The largest file a transfer may carry, e.g. 1GiB.
    #[arg(long, value_parser = parse_positive_size)]
    pub max_size: Option<u64>,
    /// How long a transfer lives before it is purged: 7d, 12h, 30m, or ISO-8601 (P7D, PT12H).
    #[arg(long, value_parser = parse_duration)]
    pub ttl: Option<String>,
    /// Purge a transfer once every recipient confirmed its download (after --grace-period).
    #[arg(long)]
    pub purge_after_all_confirmed: Option<bool>,
    /// The grace period of --purge-after-all-confirmed: 2h, or ISO-8601 (PT2H).
    #[arg(long, value_parser = parse_duration)]
    pub grace_period: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `7d`, `12h`, `30m` or `90s` as an ISO-8601 duration; an ISO-8601 duration as it is (the server
/// checks it).
pub fn parse_duration(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.starts_with('P') {
        return Ok(text.to_string());
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration: use e.g. 7d, 12h, 30m or P7D"))?;
    Ok(match unit {
        "d" => format!("P{n}D"),
        "h" => format!("PT{n}H"),
        "m" => format!("PT{n}M"),
        "s" => format!("PT{n}S"),
        _ => {
            return Err(format!(
                "{text:?} is not a duration: use e.g. 7d, 12h, 30m or P7D"
            ))
        }
    })
}

pub async fn service_owner(command: ServiceOwnerCommand) -> anyhow::Result<()> {
    match command {
        ServiceOwnerCommand::Register { name, client: args } => {
            let client = args.client()?;
            client
                .create_service_owner(&name)
                .await
                .map_err(api_error)?;
            let owner = client.service_owner().await.map_err(api_error)?;
            if args.json {
                return print_json(&owner);
            }
            println!("registered service owner {}", owner.name);
            Ok(())
        }
        ServiceOwnerCommand::Show { client: args } => {
            let owner = args.client()?.service_owner().await.map_err(api_error)?;
            if args.json {
                return print_json(&owner);
            }
            println!("name: {}", owner.name);
            for p in &owner.storage_providers {
                println!(
                    "storage: {} ({}, {})",
                    p.type_, p.deployment_status, p.deployment_environment
                );
            }
            Ok(())
        }
    }
}

pub async fn resource(command: ResourceCommand) -> anyhow::Result<()> {
    let (args, id) = match &command {
        ResourceCommand::Set(set) => (&set.client, &set.id),
        ResourceCommand::Show { client, id } => (client, id),
    };
    let client = args.client()?;
    if let ResourceCommand::Set(set) = &command {
        let update = ResourceUpdate {
            max_file_transfer_size: set.max_size.map(|n| n as i64),
            file_transfer_time_to_live: set.ttl.clone(),
            purge_file_transfer_after_all_recipients_confirmed: set.purge_after_all_confirmed,
            purge_file_transfer_grace_period: set.grace_period.clone(),
            ..ResourceUpdate::default()
        };
        client
            .configure_resource(id, &update)
            .await
            .map_err(api_error)?;
    }
    let configuration = client.resource(id).await.map_err(api_error)?;
    if args.json {
        return print_json(&configuration);
    }
    print!("{}", describe(id, &configuration));
    Ok(())
}

fn describe(id: &str, c: &ResourceConfiguration) -> String {
    let size = c
        .max_file_transfer_size
        .map(|n| format!("{n} bytes ({})", human(n.max(0) as u64)))
        .unwrap_or_else(|| "the broker's limit".into());
    format!(
        "resource:                   {id}\n\
         max size:                   {size}\n\
         time to live:               {}\n\
         purge after all confirmed:  {}\n\
         grace period:               {}\n",
        c.file_transfer_time_to_live,
        c.purge_file_transfer_after_all_recipients_confirmed,
        c.purge_file_transfer_grace_period
    )
}

#[cfg(test)]
mod tests {
    use super::parse_duration;

    #[test]
    fn durations_are_read_in_short_form_or_passed_on_as_iso_8601() {
        assert_eq!(parse_duration("7d").unwrap(), "P7D");
        assert_eq!(parse_duration("12h").unwrap(), "PT12H");
        assert_eq!(parse_duration("30m").unwrap(), "PT30M");
        assert_eq!(parse_duration("P1DT2H").unwrap(), "P1DT2H");
        assert!(parse_duration("7 weeks")
            .unwrap_err()
            .contains("not a duration"));
        assert!(parse_duration("d").is_err());
    }
}
