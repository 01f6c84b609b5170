//! `weft demo`: the story, narrated. Three people in temporary homes exchange messages by
//! carrying bundle files, make a group, and remove a member who then reads nothing new; two go
//! online over libp2p and catch up through a relay; then a group reaches people with no network
//! over a simulated Bluetooth mesh. Everything else is real: encrypted SQLite files,
//! Argon2id-derived keys, the bundle codec, libp2p on loopback, the mesh router.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, ensure};
use serde::Serialize;
use weft_core::account::Account;
use weft_core::mesh::medium::{MediumConfig, Mobility};
use weft_core::mesh::radio::sim::SimAir;
use weft_core::mesh::{RouterConfig, driver as mesh};
use weft_core::net::{Keypair, NetConfig};
use weft_core::node::{Node, NodeEvent};

use crate::output::{Output, message_line};

#[derive(clap::Args)]
pub struct Args {
    /// Keep the temporary homes and print where they are
    #[arg(long)]
    keep: bool,
}

#[derive(Serialize, Default)]
struct Transcript {
    steps: Vec<Step>,
    homes: Option<Vec<String>>,
}

#[derive(Serialize)]
struct Step {
    title: String,
    lines: Vec<String>,
}

struct Narrator<'a> {
    out: &'a Output,
    transcript: Transcript,
}

impl Narrator<'_> {
    fn step(&mut self, title: &str, lines: Vec<String>) {
        if !self.out.json {
            println!("\n▸ {title}");
            for line in &lines {
                println!("    {line}");
            }
        }
        self.transcript.steps.push(Step { title: title.to_owned(), lines });
    }
}

/// Carries one person's bundle to another and says what arrived.
fn carry(from: &Account, from_name: &str, to: &mut Account, to_name: &str) -> Result<Vec<String>> {
    let bundle = from.export_bundle()?;
    let report = to.import_bundle(&bundle)?;
    let mut lines = vec![format!("{from_name} → {to_name}: a bundle of {} bytes, carried by hand", bundle.len())];
    for c in &report.new_contacts {
        lines.push(format!("{to_name} receives a contact request from {c}"));
    }
    for g in &report.joined_groups {
        lines.push(format!("{to_name} joins the group {g:?}"));
    }
    for m in &report.messages {
        lines.push(format!("{to_name} reads in {}: {}", m.conversation, message_line(m)));
    }
    if report.unreadable > 0 {
        lines.push(format!(
            "{to_name} cannot read {} envelope(s): not addressed to any conversation {to_name} is in",
            report.unreadable
        ));
    }
    Ok(lines)
}

/// Waits for the first event `pick` accepts, for at most 30 s.
async fn wait_for<T>(
    what: &str,
    events: &mut tokio::sync::broadcast::Receiver<weft_core::node::NodeEvent>,
    mut pick: impl FnMut(weft_core::node::NodeEvent) -> Option<T>,
) -> Result<T> {
    let deadline = tokio::time::sleep(std::time::Duration::from_secs(30));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => anyhow::bail!("the network act timed out waiting for {what}"),
            event = events.recv() => match event {
                Ok(event) => if let Some(found) = pick(event) { return Ok(found) },
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => anyhow::bail!("the node stopped: {e}"),
            },
        }
    }
}

/// Alice and Bob run nodes on loopback beside a relay. A message crosses by gossip, what Alice
/// wrote before Bob's node started arrives by reconciliation, and what she writes while Bob is
/// offline reaches him through the relay after she has gone offline too.
async fn network_act(alice: Arc<Node>, bob: Arc<Node>, relay_dir: &std::path::Path) -> Result<Vec<Vec<String>>> {
    use weft_core::node::Delivery;

    let loopback = || vec!["/ip4/127.0.0.1/tcp/0".parse().expect("valid")];
    let (relay_net, relay) = weft_core::relay::start(
        relay_dir,
        NetConfig { listen: loopback(), mdns: false, tick: Duration::from_millis(250), ..NetConfig::default() },
        weft_core::relay::CacheLimits::default(),
    )
    .await?;
    let relay_addr = relay_net.listen_addrs().await[0].clone().with_p2p(relay_net.peer_id()).expect("no peer id yet");
    let config = |bootstrap| NetConfig {
        listen: loopback(),
        bootstrap,
        relays: vec![relay_addr.clone()],
        mdns: false,
        tick: Duration::from_millis(250),
        ..NetConfig::default()
    };

    alice.send("north-gate".into(), "Written before anyone was online.".into()).await?;
    let alice_net = weft_core::net::start(alice.clone(), config(vec![]), Keypair::generate_ed25519()).await?;
    let alice_addr = alice_net.listen_addrs().await[0].clone();
    let mut bob_events = bob.subscribe();
    let bob_net =
        weft_core::net::start(bob.clone(), config(vec![alice_addr.clone()]), Keypair::generate_ed25519()).await?;
    let mut online = vec![
        format!("a relay listens on {relay_addr}; it holds no account and no keys"),
        format!("alice listens on {alice_addr}; bob dials her; both list the relay (peer ids are fresh for this run)"),
    ];
    alice.send("north-gate".into(), "Now we are online: this one is pushed live.".into()).await?;
    for _ in 0..2 {
        let (message, via) = wait_for("bob to read alice", &mut bob_events, |e| match e {
            NodeEvent::MessageReceived { message, via } => Some((message, via)),
            _ => None,
        })
        .await?;
        online.push(format!("bob reads in {} via {via}: {}", message.conversation, message_line(&message)));
    }

    bob_net.stop();
    let mut relayed = vec!["bob goes offline".to_owned()];
    let mut alice_events = alice.subscribe();
    let sent = alice.send("north-gate".into(), "While you were away: the lamp is at the south gate.".into()).await?;
    wait_for("alice's message to leave", &mut alice_events, |e| {
        matches!(e, NodeEvent::DeliveryChanged { ref id, state: Delivery::Sent } if *id == sent.id).then_some(())
    })
    .await?;
    // "Sent" means a peer's connection took it; wait until the relay has stored it too.
    let held = |id: &str| {
        relay
            .envelopes()
            .into_iter()
            .filter_map(|b| weft_core::envelope::Envelope::parse(b).ok())
            .any(|e| e.id().to_hex() == id)
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !held(&sent.id) {
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "the relay never stored alice's message");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    relayed.push("alice writes to north-gate; the relay, following the group's topic, stores the envelope".to_owned());
    alice_net.stop();
    let (bytes, envelopes) = relay.usage();
    relayed
        .push(format!("alice goes offline too; the relay holds {envelopes} envelopes ({bytes} bytes of ciphertext)"));
    let bob_net = weft_core::net::start(bob.clone(), config(vec![]), Keypair::generate_ed25519()).await?;
    let (message, via) = wait_for("bob to read through the relay", &mut bob_events, |e| match e {
        NodeEvent::MessageReceived { message, via } => Some((message, via)),
        _ => None,
    })
    .await?;
    relayed
        .push(format!("bob comes back with only the relay to talk to and reads via {via}: {}", message_line(&message)));
    let held = relay.envelopes().concat();
    let names_seen = ["alice", "bob", "north-gate", "lamp"].iter().filter(|n| contains(&held, n.as_bytes())).count();
    relayed.push(format!("names or words found in what the relay holds: {names_seen}"));
    bob_net.stop();
    relay_net.stop();
    Ok(vec![online, relayed])
}

/// What reaches a node next: the message and the path that brought it.
async fn next_message(
    who: &str,
    events: &mut tokio::sync::broadcast::Receiver<NodeEvent>,
) -> Result<(weft_core::account::MessageInfo, &'static str)> {
    wait_for(&format!("{who} to read"), events, |e| match e {
        NodeEvent::MessageReceived { message, via } => Some((message, via)),
        _ => None,
    })
    .await
}

/// Alice and Bob are on libp2p; Bob's laptop also has a radio. Dave is three Bluetooth hops
/// from Bob, through two strangers' phones; Erin is across the field, out of everyone's range,
/// until one of the strangers walks over to her.
async fn mesh_act(alice: Arc<Node>, bob: Arc<Node>, others: [Account; 4]) -> Result<Vec<String>> {
    let [dave, erin, frank, grace] = others;
    let air = SimAir::start(MediumConfig::default(), 7);
    let loopback = || vec!["/ip4/127.0.0.1/tcp/0".parse().expect("valid")];
    let config = |bootstrap| NetConfig {
        listen: loopback(),
        bootstrap,
        mdns: false,
        tick: Duration::from_millis(250),
        ..NetConfig::default()
    };
    let alice_net = weft_core::net::start(alice.clone(), config(vec![]), Keypair::generate_ed25519()).await?;
    let alice_addr = alice_net.listen_addrs().await[0].clone();
    let bob_net = weft_core::net::start(bob.clone(), config(vec![alice_addr]), Keypair::generate_ed25519()).await?;
    let radio_node = |x: f64, account: Option<Account>, node: Option<Arc<Node>>| {
        let (radio, index) = air.add_radio(x, 0.0, Mobility::Static);
        async move {
            let node = match (node, account) {
                (Some(node), _) => node,
                (None, Some(account)) => Arc::new(Node::start(move || Ok(account)).await?),
                (None, None) => unreachable!("a node or an account"),
            };
            let handle = mesh::start(node.clone(), radio, RouterConfig::default());
            anyhow::Ok((node, handle, index))
        }
    };
    // 25 m apart with a 30 m range: bob - frank - grace - dave is a chain of three hops.
    let (_, _bob_mesh, bob_radio) = radio_node(0.0, None, Some(bob.clone())).await?;
    let (_frank, frank_mesh, _) = radio_node(25.0, Some(frank), None).await?;
    let (_grace, grace_mesh, grace_radio) = radio_node(50.0, Some(grace), None).await?;
    let (dave, _dave_mesh, dave_radio) = radio_node(75.0, Some(dave), None).await?;
    let (erin, _erin_mesh, _) = radio_node(400.0, Some(erin), None).await?;
    let mut lines = vec![
        "alice and bob are on libp2p (loopback); bob's laptop also has a radio".to_owned(),
        "dave has no network, only Bluetooth: bob - frank - grace - dave, 25 m apart, three hops (simulated radios: 30 m range, 20 kB/s, MTU 247)".to_owned(),
        "frank and grace are strangers whose phones run Weft; erin is 400 m away, out of everyone's range".to_owned(),
    ];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while air.links_of(bob_radio) == 0 || air.links_of(dave_radio) == 0 || air.links_of(grace_radio) < 2 {
        ensure!(tokio::time::Instant::now() < deadline, "the simulated radios never linked up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (mut bob_events, mut dave_events, mut erin_events) = (bob.subscribe(), dave.subscribe(), erin.subscribe());
    alice.send("campfire".into(), "Fire's lit by the big oak. Bring blankets.".into()).await?;
    lines.push("alice writes to campfire; her laptop has only libp2p".to_owned());
    let (message, via) = next_message("bob", &mut bob_events).await?;
    lines.push(format!("bob reads via {via}: {}", message_line(&message)));
    let (message, via) = next_message("dave", &mut dave_events).await?;
    lines.push(format!("dave reads via {via}, three hops from bob: {}", message_line(&message)));
    let carried = frank_mesh.stats().carried_envelopes + grace_mesh.stats().carried_envelopes;
    lines.push(format!(
        "frank's and grace's phones carry {carried} envelope(s) of ciphertext they cannot read; they are in no conversation"
    ));
    air.set_position(grace_radio, 390.0, 0.0);
    lines.push("grace walks across the field to where erin is".to_owned());
    let (message, via) = next_message("erin", &mut erin_events).await?;
    lines.push(format!(
        "erin reads via {via}, from the copy grace carried (store-carry-forward): {}",
        message_line(&message)
    ));
    alice_net.stop();
    bob_net.stop();
    Ok(lines)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

pub fn run(args: Args, out: &Output) -> Result<()> {
    let root = tempfile::Builder::new().prefix("weft-demo-").tempdir()?;
    let mut n = Narrator { out, transcript: Transcript::default() };
    if !out.json {
        println!(
            "Weft demo: three people with no network at all (encrypted bundle files carried by hand), then online over libp2p, then a Bluetooth mesh where there is no network."
        );
    }

    let make = |name: &str| Account::create(&root.path().join(name), &format!("{name}'s passphrase"), Some(name));
    let mut alice = make("alice")?;
    let mut bob = make("bob")?;
    let mut carol = make("carol")?;
    n.step(
        "alice, bob and carol each create an account",
        vec![
            format!(
                "each home is an SQLCipher database keyed by Argon2id from a passphrase, under {}",
                root.path().display()
            ),
            format!("alice's fingerprint: {}", alice.fingerprint()),
        ],
    );

    let alice_link = alice.card().to_link();
    let bob_link = bob.card().to_link();
    bob.add_contact(&alice_link, None)?;
    alice.add_contact(&bob_link, None)?;
    n.step(
        "alice and bob meet and scan each other's QR codes",
        vec![format!("alice's link: {alice_link}"), format!("their safety number: {}", alice.safety_number("bob")?)],
    );

    alice.send("bob", "Hi Bob! No signal here, but this still works.")?;
    let mut lines = carry(&alice, "alice", &mut bob, "bob")?;
    bob.send("alice", "Got it. Meet at the north gate at six?")?;
    lines.extend(carry(&bob, "bob", &mut alice, "alice")?);
    n.step("a 1:1 chat, carried by hand both ways", lines);

    carol.add_contact(&alice.card().to_link(), None)?;
    alice.add_contact(&carol.card().to_link(), None)?;
    let mut lines = carry(&carol, "carol", &mut alice, "alice")?;
    lines.extend(carry(&alice, "alice", &mut carol, "carol")?);
    n.step("alice and carol become contacts too", lines);

    alice.create_group("north-gate")?;
    alice.invite("north-gate", "bob")?;
    alice.invite("north-gate", "carol")?;
    alice.send("north-gate", "Group for tonight: bob, carol and me.")?;
    let mut lines = vec!["alice creates the group \"north-gate\" and invites bob and carol".to_owned()];
    lines.extend(carry(&alice, "alice", &mut bob, "bob")?);
    lines.extend(carry(&alice, "alice", &mut carol, "carol")?);
    carol.send("north-gate", "I'll bring the lamp.")?;
    lines.extend(carry(&carol, "carol", &mut alice, "alice")?);
    lines.extend(carry(&carol, "carol", &mut bob, "bob")?);
    n.step("a group of three", lines);

    alice.remove_member("north-gate", "carol")?;
    alice.send("north-gate", "Change of plan: south gate. Carol is no longer with us.")?;
    let mut lines =
        vec!["alice removes carol: the group moves to a new epoch, its secret sealed to bob alone".to_owned()];
    lines.extend(carry(&alice, "alice", &mut bob, "bob")?);
    lines.extend(carry(&alice, "alice", &mut carol, "carol")?);
    let carol_history: Vec<String> = carol.history("north-gate", 100)?.iter().map(message_line).collect();
    ensure!(
        !carol_history.iter().any(|l| l.contains("south gate")),
        "carol must not read what was sent after her removal"
    );
    lines.push("carol's view of north-gate ends at her removal:".to_owned());
    lines.extend(carol_history.iter().map(|l| format!("  {l}")));
    let refused = carol.send("north-gate", "hello?").err().map(|e| e.to_string()).unwrap_or_default();
    lines.push(format!("carol tries to write to the group: refused ({refused})"));
    n.step("carol is removed and can no longer read", lines);

    let bob_view: Vec<String> = bob.history("north-gate", 100)?.iter().map(message_line).collect();
    n.step("bob's history of north-gate", bob_view);

    drop(carol);
    let mut dave = make("dave")?;
    let mut erin = make("erin")?;
    let (frank, grace) = (make("frank")?, make("grace")?);
    for (person, name) in [(&mut dave, "dave"), (&mut erin, "erin")] {
        person.add_contact(&alice.card().to_link(), None)?;
        alice.add_contact(&person.card().to_link(), None)?;
        carry(person, name, &mut alice, "alice")?;
        carry(&alice, "alice", person, name)?;
    }
    alice.create_group("campfire")?;
    for member in ["bob", "dave", "erin"] {
        alice.invite("campfire", member)?;
    }
    let mut lines = vec![
        "dave and erin met alice earlier and swapped bundles; frank and grace are strangers".to_owned(),
        "alice makes the group campfire with bob, dave and erin".to_owned(),
    ];
    for (person, name) in [(&mut bob, "bob"), (&mut dave, "dave"), (&mut erin, "erin")] {
        let joined = carry(&alice, "alice", person, name)?.into_iter().filter(|l| l.contains("joins"));
        lines.extend(joined);
    }
    n.step("more people: dave, erin, and two strangers", lines);

    let runtime = tokio::runtime::Runtime::new()?;
    let (online, relayed, meshed) = runtime.block_on(async {
        let alice = Arc::new(Node::start(move || Ok(alice)).await?);
        let bob = Arc::new(Node::start(move || Ok(bob)).await?);
        let acts = network_act(alice.clone(), bob.clone(), &root.path().join("relay")).await?;
        let [online, relayed]: [Vec<String>; 2] = acts.try_into().map_err(|_| anyhow::anyhow!("two acts"))?;
        let meshed = mesh_act(alice, bob, [dave, erin, frank, grace]).await?;
        anyhow::Ok((online, relayed, meshed))
    })?;
    n.step("alice and bob get online: libp2p on loopback, no bundle", online);
    n.step("offline catch-up through a relay that cannot read", relayed);
    n.step("no network for dave and erin: the Bluetooth mesh", meshed);

    if args.keep {
        let path = root.keep();
        n.transcript.homes = Some(
            ["alice", "bob", "carol", "dave", "erin", "frank", "grace"]
                .iter()
                .map(|p| path.join(p).display().to_string())
                .collect(),
        );
        if !out.json {
            println!("\nThe homes are kept under {} (passphrases: \"NAME's passphrase\").", path.display());
        }
    }
    if out.json {
        out.print(&n.transcript, String::new);
    } else {
        println!("\nDone. Every message above crossed as ciphertext in padded, content-addressed envelopes.");
    }
    Ok(())
}
