//! `replyfix demo`: the sample upstream and replyfix in front of it
//! (`replyfix::demo`), the walk-through on stdout.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::{Context, Result};

/// `replyfix demo`: the sample upstream, replyfix in front of it, the
/// walk-through on stdout, then (without `--once`) both keep running for
/// the user's own client until Ctrl-C.
pub(super) fn demo(listen: SocketAddr, once: bool) -> Result<ExitCode> {
    use replyfix::demo::{Demo, capture::Captured, report, try_it};
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let captured = Captured::default();
    // Rewrite records are shown by the demo; warnings and errors still go
    // to stderr.
    let _ = tracing_subscriber::registry()
        .with(captured.layer())
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(tracing_subscriber::filter::LevelFilter::WARN),
        )
        .try_init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let demo = Demo::start(listen).await.map_err(|e| {
            anyhow::anyhow!(
                "{e}\n(another process on {listen}? try: replyfix demo --listen 127.0.0.1:2526)"
            )
        })?;
        let shown = demo.walk(&captured).await?;
        let rules = demo.server.rules.load().version().to_string();
        out!("{}", report(&shown, demo.upstream.addr, demo.addr, &rules));
        if !once {
            // Echo on before the invitation is printed: a client that
            // connects as soon as it reads "Ctrl-C stops the demo." must
            // find its rewrites printed (the walk-through's are done).
            captured.echo();
            out!("{}", try_it(demo.addr));
            let _ = tokio::signal::ctrl_c().await;
        }
        demo.server.shutdown().await;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}
