//! Parses the command line and wires the parts together; the work happens in the library.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use clap::{CommandFactory, Parser};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info};

use vantage::cli::{self, Cli, Command, ProbeArgs, ProbeType};
use vantage::config::{self, LoadOptions, Target};
use vantage::discover::{Discovery, DiscoveryCollector};
use vantage::import;
use vantage::metrics::{self, Build, Metrics};
use vantage::probe;
use vantage::push::{Push, PushCollector};
use vantage::reload::{self, Fetched, ReloadStatus, Reloader, Request, Trigger};
use vantage::report;
use vantage::scheduler::Telemetry;
use vantage::scheduler::{Limiter, Probes, Shared};
use vantage::server::probe::{ProbeCollector, ProbeEndpoint};
use vantage::shard::Shard;
use vantage::store::Store;
use vantage::{logging, server};

/// How long a stop waits for the remote_write receivers to take what is queued.
const PUSH_FLUSH: Duration = Duration::from_secs(5);

/// `vantage probe` could not run at all (bad arguments or config), as opposed to a failed probe;
/// `vantage import-blackbox` could not read its input.
const CANNOT_RUN: u8 = 2;

/// `vantage import-blackbox` wrote a config without some settings, named on stderr.
const NOT_CONVERTED: u8 = 3;

fn main() -> ExitCode {
    let started = SystemTime::now();
    let cli = Cli::parse();
    if let Err(e) = cli.check_shard_flags() {
        Cli::command()
            .error(clap::error::ErrorKind::ArgumentConflict, e)
            .exit();
    }
    logging::init(cli.log_level, cli.log_format);
    match &cli.command {
        None => {
            let runtime = runtime();
            let code = runtime.block_on(run_exporter(&cli, started));
            // A reload still waiting for a file (up to its time limit) must not delay the exit:
            // everything that needs a clean end has ended inside `run_exporter`.
            runtime.shutdown_background();
            code
        }
        Some(Command::CheckConfig { path }) => {
            check_config(path.as_deref().unwrap_or(&cli.config_file), &cli)
        }
        Some(Command::Probe(args)) => runtime().block_on(probe_once(&cli, args)),
        Some(Command::ImportBlackbox {
            blackbox,
            prometheus,
        }) => import_blackbox(blackbox, prometheus.as_deref()),
    }
}

fn import_blackbox(blackbox: &Path, prometheus: Option<&Path>) -> ExitCode {
    let read = |path: &Path| {
        config::read(path)
            .map(|text| (path.display().to_string(), text))
            .map_err(|e| e.to_string())
    };
    let inputs = read(blackbox).and_then(|b| Ok((b, prometheus.map(read).transpose()?)));
    let ((blackbox_file, blackbox_text), prometheus) = match inputs {
        Ok(inputs) => inputs,
        Err(e) => {
            eprintln!("vantage import-blackbox: {e}");
            return ExitCode::from(CANNOT_RUN);
        }
    };
    let blackbox = import::Source {
        file: &blackbox_file,
        text: &blackbox_text,
    };
    let prometheus = prometheus
        .as_ref()
        .map(|(file, text)| import::Source { file, text });
    let conversion = match import::convert(blackbox, prometheus) {
        Ok(conversion) => conversion,
        Err(e) => {
            eprintln!("vantage import-blackbox: {e}");
            return ExitCode::from(CANNOT_RUN);
        }
    };
    print!("{}", conversion.config);
    for item in &conversion.items {
        eprintln!("{item}");
    }
    if conversion.complete() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(NOT_CONVERTED)
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("starting the tokio runtime")
}

/// How to load the config: for `vantage probe --name`, every target of every location and shard.
fn options(cli: &Cli, every_location: bool) -> Result<LoadOptions, String> {
    Ok(LoadOptions {
        location: cli.location.clone(),
        every_location,
        shard: if every_location {
            Shard::WHOLE
        } else {
            cli.shard()?
        },
    })
}

fn check_config(path: &Path, cli: &Cli) -> ExitCode {
    let options = match options(cli, false) {
        Ok(options) => options,
        Err(e) => {
            eprintln!("vantage check-config: {e}");
            return ExitCode::FAILURE;
        }
    };
    match config::load(path, &options) {
        Ok(config) => {
            let mistakes: Vec<String> = config
                .sources
                .iter()
                .flat_map(|r| r.errors.iter().map(ToString::to_string))
                .collect();
            if mistakes.is_empty() {
                println!("{}: OK", path.display());
            } else {
                println!("{}: OK, but target sources have mistakes", path.display());
            }
            print!("{}", config.summary());
            for m in &mistakes {
                eprintln!("{m}");
            }
            if mistakes.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(errors) => {
            eprintln!("{errors}");
            ExitCode::FAILURE
        }
    }
}

/// The collectors of what `/metrics` shows beside probes and the scheduler: the push's, the
/// target sources', and `/probe`'s when it is served.
fn extra_collectors(
    push: &Arc<Push>,
    probe: Option<&Arc<ProbeEndpoint>>,
    discovery: &Arc<Discovery>,
) -> Vec<Box<dyn prometheus_client::collector::Collector>> {
    let mut extra: Vec<Box<dyn prometheus_client::collector::Collector>> = vec![
        Box::new(PushCollector(Arc::clone(push))),
        Box::new(DiscoveryCollector(Arc::clone(discovery))),
    ];
    if let Some(probe) = probe {
        extra.push(Box::new(ProbeCollector(Arc::clone(probe))));
    }
    extra
}

async fn run_exporter(cli: &Cli, started: SystemTime) -> ExitCode {
    // Installed first, so a SIGTERM during start-up is not the default (abrupt) exit.
    let (mut sigterm, mut sigint, mut sighup) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) {
        (Ok(term), Ok(int), Ok(hup)) => (term, int, hup),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            error!(error = %e, "cannot install signal handlers");
            return ExitCode::FAILURE;
        }
    };
    let options = match options(cli, false) {
        Ok(options) => options,
        Err(e) => {
            error!(error = %e, "cannot tell this instance's shard");
            return ExitCode::FAILURE;
        }
    };
    let initial = match reload::load(&cli.config_file, &options) {
        Ok(initial) => initial,
        Err(errors) => {
            for e in &errors.0 {
                error!(error = %e, "invalid config");
            }
            return ExitCode::FAILURE;
        }
    };
    let web = match &cli.web_config_file {
        None => None,
        Some(path) => match server::web_config::WebConfig::load(path).await {
            Ok(web) => Some(web),
            Err(e) => {
                error!(error = %e, "invalid web config");
                return ExitCode::FAILURE;
            }
        },
    };
    // Without an address nothing is served: the instance only pushes (or only logs).
    let listener = match cli.listen_address.as_str() {
        "" => None,
        address => match server::bind(address).await {
            Ok(listener) => Some(listener),
            Err(e) => {
                error!(listen_address = %address, error = %e, "cannot listen");
                return ExitCode::FAILURE;
            }
        },
    };

    let shared = Shared {
        store: Arc::new(Store::default()),
        limiter: Arc::new(Limiter::new(initial.config.max_concurrent_probes)),
        telemetry: Telemetry::new(),
    };
    let status = Arc::new(ReloadStatus::new(SystemTime::now()));
    let build = Build {
        version: cli::VERSION,
        revision: cli::REVISION,
        started,
        shard: options.shard,
    };
    let probe = cli.enable_probe.then(|| {
        let endpoint = ProbeEndpoint::new(
            cli.probe_timeout_offset,
            metrics::render_probe,
            Arc::clone(&shared.limiter),
        );
        endpoint.apply(&initial.config.modules);
        Arc::new(endpoint)
    });
    let (reloads, mut requests) = mpsc::channel::<Request>(16);
    let fetched = Fetched::default();
    let discovery = Arc::new(Discovery::new(Arc::clone(&fetched), reloads.clone()));
    discovery.apply(&initial.config);
    let push = Arc::new(Push::new());
    shared.store.observe(Arc::clone(&push) as _);
    let metrics = Arc::new(Metrics::new(
        &shared,
        Arc::clone(&status),
        build,
        extra_collectors(&push, probe.as_ref(), &discovery),
    ));
    push.set_own_metrics(Arc::clone(&metrics));
    push.apply(&initial.config.remote_write);
    let state = Arc::new(server::State {
        metrics,
        store: Arc::clone(&shared.store),
        ready: AtomicBool::new(false),
        reloads: reloads.clone(),
        lifecycle: cli.enable_lifecycle,
        web,
        probe: probe.clone(),
    });
    let (stop_server, server_stopped) = oneshot::channel::<()>();
    let server = listener.map(|listener| {
        tokio::spawn(server::serve(listener, Arc::clone(&state), async {
            let _ = server_stopped.await;
        }))
    });
    if server.is_none() {
        info!("--web.listen-address is empty: serving no endpoints");
    }
    info!(
        listen_address = %cli.listen_address,
        config = %cli.config_file.display(),
        location = %initial.config.location,
        targets = initial.config.targets.len(),
        shard = %options.shard,
        version = cli::VERSION,
        revision = cli::REVISION,
        "vantage started"
    );
    reload::log_elsewhere(&initial.config);
    let mut reloader = Reloader::start(
        &cli.config_file,
        options,
        initial,
        Arc::new(Probes),
        shared,
        status,
        fetched,
    )
    .await;
    reloader.on_apply({
        let push = Arc::clone(&push);
        let discovery = Arc::clone(&discovery);
        Box::new(move |config| {
            push.apply(&config.remote_write);
            discovery.apply(config);
            if let Some(probe) = &probe {
                probe.apply(&config.modules);
            }
        })
    });
    state.ready.store(true, Ordering::Release);
    reloader.watch(reloads);

    let signal = loop {
        let request = tokio::select! {
            signal = stop_signal(&mut sigterm, &mut sigint) => break signal,
            _ = sighup.recv() => Request { trigger: Trigger::Signal, reply: None },
            Some(request) = requests.recv() => request,
        };
        // Reading the config may wait for slow files; a signal to stop does not wait for it.
        // Applying what was read is quick and is not cut short.
        let read = tokio::select! {
            signal = stop_signal(&mut sigterm, &mut sigint) => break signal,
            read = reloader.read(request.trigger) => read,
        };
        let result = reloader.apply(request.trigger, read).await;
        if let Some(reply) = request.reply {
            let _ = reply.send(result);
        }
    };
    info!(signal, "shutting down");
    discovery.stop();
    reloader.stop().await;
    // What the receivers have not taken yet goes now, within a bound: a stop must not hang on
    // a receiver that is away.
    push.stop(tokio::time::Instant::now() + PUSH_FLUSH).await;
    let _ = stop_server.send(());
    if let Some(server) = server {
        let _ = server.await;
    }
    ExitCode::SUCCESS
}

/// The name of the signal that asks vantage to stop, once one comes.
async fn stop_signal(sigterm: &mut Signal, sigint: &mut Signal) -> &'static str {
    tokio::select! {
        _ = sigterm.recv() => "SIGTERM",
        _ = sigint.recv() => "SIGINT",
    }
}

async fn probe_once(cli: &Cli, args: &ProbeArgs) -> ExitCode {
    let target = match probe_target(cli, args) {
        Ok(target) => target,
        Err(message) => {
            eprintln!("vantage probe: {message}");
            return ExitCode::from(CANNOT_RUN);
        }
    };
    let run = probe::run(&target.probe, &target.assertions, &target.policy).await;
    print!("{}", report::render(&target, &run));
    if run.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The target `vantage probe` runs: the named one from the config, or one from the arguments.
fn probe_target(cli: &Cli, args: &ProbeArgs) -> Result<Target, String> {
    let url = args.target.as_deref().is_some_and(|t| t.contains("://"));
    let kind = match args.kind {
        None if url => ProbeType::Http,
        None => ProbeType::Tcp,
        Some(ProbeType::Http) if !url && args.name.is_none() => {
            return Err("--type=http takes a URL, such as https://example.com/healthz".into());
        }
        Some(kind @ (ProbeType::Tcp | ProbeType::Tls | ProbeType::Icmp | ProbeType::Dns))
            if url =>
        {
            let kind = format!("{kind:?}").to_lowercase();
            return Err(format!("--type={kind} takes HOST:PORT, not a URL"));
        }
        Some(kind) => kind,
    };
    if args.kind.is_some() && args.name.is_some() {
        return Err("--type is for HOST:PORT; --name runs the target as configured".into());
    }
    if args.starttls.is_some() {
        if args.name.is_some() {
            return Err("--starttls is for HOST:PORT; --name runs the target as configured".into());
        }
        if !matches!(kind, ProbeType::Tcp | ProbeType::Tls) {
            return Err("--starttls takes HOST:PORT (with no --type, or tcp or tls)".into());
        }
    }
    let mut target = match (&args.name, &args.target) {
        (Some(name), address) => {
            let config =
                config::load(&cli.config_file, &options(cli, true)?).map_err(|e| e.to_string())?;
            let named = config
                .targets
                .iter()
                .find(|t| t.name == *name)
                .ok_or_else(|| {
                    format!("{} has no target named {name:?}", cli.config_file.display())
                })?;
            match address {
                Some(address) => named.retarget(address)?,
                None => named.as_ref().clone(),
            }
        }
        (None, Some(address)) => {
            let location = cli.location.clone().unwrap_or_default();
            let timeout = Duration::from_secs(5);
            match kind {
                ProbeType::Http => Target::adhoc_http(address, timeout, &location)?,
                ProbeType::Icmp => Target::adhoc_icmp(address, timeout, &location)?,
                ProbeType::Dns => Target::adhoc_dns(address, timeout, &location)?,
                tls => Target::adhoc_tcp(
                    address,
                    tls == ProbeType::Tls,
                    args.starttls,
                    timeout,
                    &location,
                )?,
            }
        }
        (None, None) => {
            return Err(
                "give HOST:PORT or a URL, or --name=TARGET to run a check from the config".into(),
            );
        }
    };
    if let Some(timeout) = args.timeout {
        target.policy.timeout = timeout;
    }
    Ok(target)
}
