//! One account on several devices, for apps: the first device links a new one (a one-time
//! link shown as a QR code; the code both screens show; the grant), the new device joins with a
//! [`WeftJoin`], and the first device lists and revokes devices. The request and the grant
//! travel over the network (libp2p, a relay, the mesh: `WeftJoin::grant_over_network`,
//! `Event::LinkRequested`, `grant_arrived_device`), or the app carries them (a QR code, a file,
//! its own channel).

use std::path::PathBuf;
use std::sync::Arc;

use weft_core::account::{Account, DeviceInfo, HistoryChoice, system_clock};
use weft_core::crypto::OsEntropy;
use weft_core::devices::linking::{Applicant, Joining, ShortCode, Ticket};
use weft_core::identity::DeviceKeys;
use weft_core::node::Node;
use weft_core::store::DatabaseKey;

use weft_core::net::JoinOverNetwork;

use crate::node::{NetworkConfig, WeftNode, exact, on_runtime};
use crate::{WeftError, hex};

/// One of the account's devices.
#[derive(uniffi::Record)]
pub struct Device {
    pub name: String,
    /// The device's id (its key), to revoke it by.
    pub device: String,
    pub linked_ms: u64,
    /// When this device last had an envelope of it.
    pub last_seen_ms: Option<u64>,
    pub this_device: bool,
    /// It holds the account key: only it links and revokes.
    pub primary: bool,
}

impl From<DeviceInfo> for Device {
    fn from(d: DeviceInfo) -> Self {
        Device {
            name: d.name,
            device: hex(&d.device),
            linked_ms: d.linked_ms,
            last_seen_ms: d.last_seen_ms,
            this_device: d.this_device,
            primary: d.primary,
        }
    }
}

/// A new device's request, as the first device sees it.
#[derive(uniffi::Record)]
pub struct LinkRequest {
    /// What the user called the new device.
    pub name: String,
    pub device: String,
    /// The code both screens must show ("123 456"); pass `code_value` to `grant_device`.
    pub code: String,
    pub code_value: u32,
}

impl LinkRequest {
    fn new(applicant: Applicant, code: ShortCode) -> LinkRequest {
        LinkRequest { name: applicant.name, device: hex(&applicant.device), code: code.to_string(), code_value: code.0 }
    }
}

fn history_choice(with_history: bool) -> HistoryChoice {
    if with_history { HistoryChoice::Include } else { HistoryChoice::Leave }
}

#[uniffi::export]
impl WeftNode {
    /// A one-time link for a new device, valid ten minutes (show it as a QR code). The
    /// account's first device only.
    pub async fn link_device(&self) -> Result<String, WeftError> {
        let node = self.core()?;
        on_runtime(async move { Ok(node.link_offer().await?) }).await
    }

    /// Who a new device's request comes from, and the code its screen shows. Changes nothing.
    pub async fn open_link_request(&self, request: Vec<u8>) -> Result<LinkRequest, WeftError> {
        let node = self.core()?;
        on_runtime(async move {
            let (applicant, code) = node.open_link_request(request).await?;
            Ok(LinkRequest::new(applicant, code))
        })
        .await
    }

    /// The grant for the device whose request this is, once the user confirmed the codes match
    /// (`code`: the value both screens show), with the conversations' history if
    /// `with_history` (the user chooses). Another code cancels the link and grants nothing.
    pub async fn grant_device(&self, request: Vec<u8>, code: u32, with_history: bool) -> Result<Vec<u8>, WeftError> {
        let node = self.core()?;
        on_runtime(async move { Ok(node.grant_link(request, code, history_choice(with_history)).await?.1) }).await
    }

    /// The requests that came over the network for the link that is out.
    pub async fn arrived_link_requests(&self) -> Result<Vec<LinkRequest>, WeftError> {
        let node = self.core()?;
        on_runtime(async move {
            Ok(node.arrived_link_requests().await?.into_iter().map(|a| LinkRequest::new(a.applicant, a.code)).collect())
        })
        .await
    }

    /// Grants the device whose request came over the network showing `code`, and hands the
    /// grant out there. If no request that came shows `code`, the link is cancelled and nothing
    /// is granted.
    pub async fn grant_arrived_device(&self, code: u32, with_history: bool) -> Result<LinkRequest, WeftError> {
        let node = self.core()?;
        on_runtime(async move {
            let applicant = node.grant_arrived(code, history_choice(with_history)).await?;
            Ok(LinkRequest::new(applicant, ShortCode(code)))
        })
        .await
    }

    /// Forgets the waiting link.
    pub async fn cancel_link(&self) -> Result<(), WeftError> {
        let node = self.core()?;
        on_runtime(async move { Ok(node.cancel_link().await?) }).await
    }

    /// The account's devices this one knows of, this one first.
    pub async fn devices(&self) -> Result<Vec<Device>, WeftError> {
        let node = self.core()?;
        on_runtime(async move { Ok(node.devices().await?.into_iter().map(Into::into).collect()) }).await
    }

    /// Revokes a lost or stolen device (by its id): it reads nothing members write after they
    /// processed the revocation, and what it sends is refused. The account's contact link is
    /// replaced too (the device held its keys): `link()` gives the new one, contacts get it in
    /// their conversation. The first device only.
    pub async fn revoke_device(&self, device: String) -> Result<Device, WeftError> {
        let device = exact("device", device)?;
        let node = self.core()?;
        on_runtime(async move { Ok(node.revoke_device(device).await?.into()) }).await
    }
}

/// A new device joining an account: made from the first device's link, it holds this
/// device's keys until the grant comes.
#[derive(uniffi::Object)]
pub struct WeftJoin {
    device: DeviceKeys,
    name: String,
    joining: Joining,
    /// The request offered on libp2p and the app's radios, once either was started.
    carried: Arc<tokio::sync::Mutex<Option<JoinOverNetwork>>>,
    silenced: Arc<std::sync::atomic::AtomicBool>,
    /// The exchange a grant that came over the network opens under (bound to the first
    /// device's nonce), once it came.
    bound: Arc<std::sync::Mutex<Option<Joining>>>,
}

#[uniffi::export]
impl WeftJoin {
    /// Answers `link` (from the first device's `link_device`) as a device called `name`.
    #[uniffi::constructor]
    pub fn new(link: String, name: String) -> Result<Arc<Self>, WeftError> {
        let ticket = Ticket::from_link(&link)?;
        let mut entropy = OsEntropy;
        let device = DeviceKeys::generate(&mut entropy)?;
        let joining = Joining::start(ticket, &device, &name, system_clock()(), &mut entropy)?;
        Ok(Arc::new(WeftJoin {
            device,
            name,
            joining,
            carried: Arc::new(tokio::sync::Mutex::new(None)),
            silenced: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            bound: Arc::new(std::sync::Mutex::new(None)),
        }))
    }

    /// The code this screen shows when the request goes over the network (`start_network`,
    /// `attach_radio`): known once the first device answered it (it covers that device's
    /// nonce); `None` before.
    pub fn network_code(&self) -> Option<String> {
        if let Some(bound) = self.bound.lock().ok().and_then(|b| b.clone()) {
            return Some(bound.code().to_string());
        }
        let carried = self.carried.try_lock().ok()?;
        carried.as_ref()?.code().map(|c| c.to_string())
    }

    /// The request to carry to the first device.
    pub fn request(&self) -> Vec<u8> {
        self.joining.request().to_vec()
    }

    /// The code this screen shows when the request is carried as a file (`request`); over the
    /// network it is `network_code`. The first device's must be the same.
    pub fn code(&self) -> String {
        self.joining.code().to_string()
    }

    pub fn code_value(&self) -> u32 {
        self.joining.code().0
    }

    /// Offers the request on the network `config` reaches (the first device must be running
    /// there, or a relay both use) and waits for the grant (see `wait_for_grant`).
    pub async fn grant_over_network(&self, config: NetworkConfig) -> Result<Vec<u8>, WeftError> {
        self.start_network(config).await?;
        self.wait_for_grant().await
    }

    /// Offers the request on libp2p, under a peer id used for nothing else.
    pub async fn start_network(&self, config: NetworkConfig) -> Result<(), WeftError> {
        let config = config.into_core()?;
        let (carried, joining) = (self.carried.clone(), self.joining.clone());
        on_runtime(async move {
            let mut carried = carried.lock().await;
            let join = match carried.as_mut() {
                Some(join) => join,
                None => carried.insert(JoinOverNetwork::new(&joining, &mut OsEntropy)?),
            };
            Ok(join.start_libp2p(config).await?)
        })
        .await
    }

    /// Offers the request over a radio the app drives too (the first device nearby, no
    /// network): the app reports links and fragments to the returned handle, as for a node.
    pub fn attach_radio(
        &self,
        driver: Arc<dyn crate::node::RadioDriver>,
    ) -> Result<Arc<crate::node::RadioHandle>, WeftError> {
        let driver = crate::node::ForeignDriver { driver, silenced: self.silenced.clone() };
        let (radio, events) = weft_core::mesh::radio::feed::fed_radio(Arc::new(driver), "app");
        let mut carried = self.carried.blocking_lock();
        let join = match carried.as_mut() {
            Some(join) => join,
            None => carried.insert(JoinOverNetwork::new(&self.joining, &mut OsEntropy)?),
        };
        let _guard = crate::node::RUNTIME.enter();
        join.attach_radio(radio, weft_core::mesh::RouterConfig::default());
        Ok(Arc::new(crate::node::RadioHandle { events, id: 0 }))
    }

    /// Waits for the grant over whatever this join is on (`start_network`, `attach_radio`);
    /// then pass it to `finish`. Fails with `Expired` when the link's ten minutes are over.
    pub async fn wait_for_grant(&self) -> Result<Vec<u8>, WeftError> {
        let left = self.joining.ticket().expires_ms.saturating_sub(system_clock()());
        let (carried, silenced, bound) = (self.carried.clone(), self.silenced.clone(), self.bound.clone());
        on_runtime(async move {
            let mut grant = match carried.lock().await.as_ref() {
                Some(join) => join.grant_receiver(),
                None => {
                    return Err(WeftError::InvalidInput {
                        detail: "the request is on no network yet: start_network or attach_radio first".into(),
                    });
                }
            };
            let waited = tokio::time::timeout(std::time::Duration::from_millis(left), async {
                grant.wait_for(Option::is_some).await.map(|got| got.clone().expect("waited for Some"))
            })
            .await;
            let got = match waited {
                Ok(Ok(got)) => got,
                Ok(Err(_)) => return Err(weft_core::Error::Closed.into()),
                Err(_) => return Err(weft_core::Error::Expired { what: "device link" }.into()),
            };
            // The request is answered: off the network and the radios.
            silenced.store(true, std::sync::atomic::Ordering::SeqCst);
            carried.lock().await.take();
            *bound.lock().map_err(|_| WeftError::Internal { detail: "the join's lock was poisoned".into() })? =
                Some(got.joining);
            Ok(got.grant)
        })
        .await
    }

    /// Makes this device's home from the first device's grant and opens it: a node of the
    /// account, in every conversation, from now on.
    pub async fn finish(
        &self,
        home: String,
        database_key: Vec<u8>,
        grant: Vec<u8>,
    ) -> Result<Arc<WeftNode>, WeftError> {
        let key: [u8; 32] = database_key
            .try_into()
            .map_err(|_| WeftError::InvalidInput { detail: "the database key must be 32 bytes".into() })?;
        let device = DeviceKeys::from_secrets(&self.device.sign_secret(), &self.device.dh_secret_bytes());
        // A grant that came over the network opens under the exchange bound to its nonce.
        let bound = self.bound.lock().ok().and_then(|b| b.clone());
        let (name, joining) = (self.name.clone(), bound.unwrap_or_else(|| self.joining.clone()));
        on_runtime(async move {
            let node = Node::start(move || {
                Account::create_linked(
                    &PathBuf::from(home),
                    &DatabaseKey::from_bytes(key),
                    &device,
                    &name,
                    &joining,
                    &grant,
                    Box::new(OsEntropy),
                    system_clock(),
                )
            })
            .await?;
            Ok(WeftNode::over(node))
        })
        .await
    }
}
