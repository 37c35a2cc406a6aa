//! `netobs top`: the running agent's flows, live, in the terminal. Reads the
//! agent's API once a second; sorts, filters, and makes plaintext on a
//! network that promised encryption impossible to miss.
use std::{
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use clap::Args;
use ratatui::{
    crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers},
    layout::{Constraint, Layout},
    style::{Color, Modifier, Style},
    text::Line,
    widgets::{Cell, Paragraph, Row as TableRow, Table},
    DefaultTerminal, Frame,
};

use super::{
    client,
    render::human_bytes,
    table::{Mark, Rates, Row},
};
use crate::api::{Class, FlowsEndpoint, Summary, SummaryEndpoint};

#[derive(Debug, Args)]
pub struct TopArgs {
    #[command(flatten)]
    agent: client::AgentArgs,
}

const REFRESH: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sort {
    Rate,
    Bytes,
    Name,
}

impl Sort {
    fn next(self) -> Sort {
        match self {
            Sort::Rate => Sort::Bytes,
            Sort::Bytes => Sort::Name,
            Sort::Name => Sort::Rate,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Sort::Rate => "rate",
            Sort::Bytes => "bytes",
            Sort::Name => "name",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClassFilter {
    All,
    Plain,
    Esp,
}

impl ClassFilter {
    fn next(self) -> ClassFilter {
        match self {
            ClassFilter::All => ClassFilter::Plain,
            ClassFilter::Plain => ClassFilter::Esp,
            ClassFilter::Esp => ClassFilter::All,
        }
    }

    fn label(self) -> &'static str {
        match self {
            ClassFilter::All => "all",
            ClassFilter::Plain => "plaintext",
            ClassFilter::Esp => "esp",
        }
    }

    fn admits(self, m: Mark) -> bool {
        match self {
            ClassFilter::All => true,
            ClassFilter::Plain => matches!(m, Mark::Plain | Mark::PlainOnEncrypted),
            ClassFilter::Esp => m == Mark::Esp,
        }
    }
}

struct App {
    agent: client::Agent,
    rates: Rates,
    rows: Vec<Row>,
    summary: Summary,
    /// The last read's failure, shown in the header (the agent may restart).
    error: Option<String>,
    sort: Sort,
    class: ClassFilter,
    filter: String,
    editing: bool,
}

impl App {
    fn refresh(&mut self) {
        let read = || -> Result<_> {
            Ok((
                client::fetch::<FlowsEndpoint>(&self.agent)?,
                client::fetch::<SummaryEndpoint>(&self.agent)?,
            ))
        };
        match read() {
            Ok((list, summary)) => {
                self.rows = self.rates.rows(&list.flows);
                self.summary = summary;
                self.error = None;
            }
            Err(e) => self.error = Some(format!("{e:#}")),
        }
    }

    /// The rows to show, filtered and sorted.
    fn visible(&self) -> Vec<&Row> {
        let needle = self.filter.to_lowercase();
        let mut rows: Vec<&Row> = self
            .rows
            .iter()
            .filter(|r| self.class.admits(r.mark))
            .filter(|r| {
                needle.is_empty()
                    || [&r.network, &r.src, &r.dst, &r.peer]
                        .iter()
                        .any(|f| f.to_lowercase().contains(&needle))
                    || r.mark.label().to_lowercase().contains(&needle)
            })
            .collect();
        match self.sort {
            Sort::Rate => rows.sort_by(|a, b| b.bps.total_cmp(&a.bps).then(b.bytes.cmp(&a.bytes))),
            Sort::Bytes => rows.sort_by_key(|r| std::cmp::Reverse(r.bytes)),
            Sort::Name => {
                rows.sort_by(|a, b| (&a.network, &a.src, &a.dst).cmp(&(&b.network, &b.src, &b.dst)))
            }
        }
        rows
    }

    /// False when the user asked to quit.
    fn key(&mut self, code: KeyCode, modifiers: KeyModifiers) -> bool {
        if modifiers.contains(KeyModifiers::CONTROL) && code == KeyCode::Char('c') {
            return false;
        }
        if self.editing {
            match code {
                KeyCode::Enter | KeyCode::Esc => self.editing = false,
                KeyCode::Backspace => {
                    self.filter.pop();
                }
                KeyCode::Char(c) => self.filter.push(c),
                _ => {}
            }
            return true;
        }
        match code {
            KeyCode::Char('q') => return false,
            KeyCode::Char('s') => self.sort = self.sort.next(),
            KeyCode::Char('c') => self.class = self.class.next(),
            KeyCode::Char('/') => {
                self.editing = true;
                self.filter.clear();
            }
            KeyCode::Esc => self.filter.clear(),
            _ => {}
        }
        true
    }
}

fn mark_style(m: Mark) -> Style {
    match m {
        Mark::PlainOnEncrypted => Style::new()
            .fg(Color::White)
            .bg(Color::Red)
            .add_modifier(Modifier::BOLD),
        Mark::Plain => Style::new().fg(Color::Yellow),
        Mark::Esp => Style::new().fg(Color::Green),
        Mark::Other => Style::new(),
    }
}

fn header(app: &App) -> Vec<Line<'static>> {
    let s = &app.summary;
    let class = |c: Class| {
        let n = s.totals.classes.get(c);
        format!("{c} {} pkts {}", n.packets, human_bytes(n.bytes))
    };
    let alerts = s.alerts;
    let plain_on_encrypted = app
        .rows
        .iter()
        .filter(|r| r.mark == Mark::PlainOnEncrypted)
        .count();
    let mut first = vec![format!(
        "netobs top  agent {}  flows {}  docker {}",
        app.agent,
        s.totals.flow_count,
        if s.docker_up { "up" } else { "down" }
    )];
    if let Some(e) = &app.error {
        first.push(format!("  ERROR: {e}"));
    }
    let alert_style = if alerts > 0 || plain_on_encrypted > 0 {
        Style::new()
            .fg(Color::White)
            .bg(Color::Red)
            .add_modifier(Modifier::BOLD)
    } else {
        Style::new()
    };
    vec![
        Line::from(first.concat()),
        Line::from(
            [Class::Vxlan, Class::Esp, Class::Other, Class::Malformed]
                .map(class)
                .join("   "),
        ),
        Line::styled(
            format!("alerts {alerts}   plaintext flows on encrypted networks {plain_on_encrypted}"),
            alert_style,
        ),
    ]
}

fn draw(frame: &mut Frame, app: &App) {
    let [top, body, bottom] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    frame.render_widget(Paragraph::new(header(app)), top);

    let rows: Vec<TableRow> = app
        .visible()
        .into_iter()
        .map(|r| {
            TableRow::new(vec![
                Cell::from(r.network.clone()),
                Cell::from(r.id.clone()),
                Cell::from(r.mark.label()).style(mark_style(r.mark)),
                Cell::from(r.peer.clone()),
                Cell::from(r.src.clone()),
                Cell::from(r.dst.clone()),
                Cell::from(format!("{:.0}", r.pps)),
                Cell::from(human_bytes(r.bps as u64)),
                Cell::from(r.packets.to_string()),
                Cell::from(human_bytes(r.bytes)),
                Cell::from(r.last_request.clone()),
            ])
        })
        .collect();
    let widths = [
        Constraint::Length(12),
        Constraint::Length(10),
        Constraint::Length(8),
        Constraint::Length(14),
        Constraint::Length(20),
        Constraint::Length(20),
        Constraint::Length(8),
        Constraint::Length(9),
        Constraint::Length(10),
        Constraint::Length(9),
        Constraint::Min(10),
    ];
    let head = TableRow::new(vec![
        "network",
        "vni/spi",
        "class",
        "peer",
        "source",
        "destination",
        "pkt/s",
        "B/s",
        "packets",
        "bytes",
        "last request",
    ])
    .style(Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED));
    frame.render_widget(Table::new(rows, widths).header(head), body);

    let filter = if app.editing {
        format!("filter: {}_", app.filter)
    } else if app.filter.is_empty() {
        "/ filter".to_owned()
    } else {
        format!("/ filter: {} (esc clears)", app.filter)
    };
    let keys = format!(
        "q quit   s sort: {}   c class: {}   {filter}",
        app.sort.label(),
        app.class.label()
    );
    frame.render_widget(
        Paragraph::new(keys).style(Style::new().add_modifier(Modifier::REVERSED)),
        bottom,
    );
}

fn run(terminal: &mut DefaultTerminal, mut app: App) -> Result<()> {
    let mut last = Instant::now();
    app.refresh();
    loop {
        terminal
            .draw(|f| draw(f, &app))
            .context("drawing the screen")?;
        let wait = REFRESH.saturating_sub(last.elapsed());
        if event::poll(wait).context("reading the keyboard")? {
            if let Event::Key(k) = event::read().context("reading the keyboard")? {
                if k.kind == KeyEventKind::Press && !app.key(k.code, k.modifiers) {
                    return Ok(());
                }
            }
        }
        if last.elapsed() >= REFRESH {
            app.refresh();
            last = Instant::now();
        }
    }
}

pub fn top(args: TopArgs) -> Result<ExitCode> {
    // Fail in one line before taking the terminal over.
    let agent = args.agent.agent()?;
    client::fetch::<SummaryEndpoint>(&agent)?;
    let app = App {
        agent,
        rates: Rates::default(),
        rows: Vec::new(),
        summary: Summary::default(),
        error: None,
        sort: Sort::Rate,
        class: ClassFilter::All,
        filter: String::new(),
        editing: false,
    };
    // ratatui::init also restores the terminal if we panic.
    let mut terminal = ratatui::init();
    let result = run(&mut terminal, app);
    ratatui::restore();
    result.map(|()| ExitCode::SUCCESS)
}
