//! `netobs top`: the running agent's flows, live, in the terminal; with
//! `--cluster`, every node's. Rows are service pairs by default (short
//! connections, one HTTP request each, would otherwise fill the screen with
//! finished connections at 0 pkt/s); Enter opens a pair into its
//! connections, `g` shows every connection. Reads happen in a thread of
//! their own once a second, so a slow node never freezes the screen; rates
//! come from two successive reads.
use std::{
    collections::{HashMap, HashSet},
    process::ExitCode,
    sync::mpsc,
    time::Duration,
};

use anyhow::{Context, Result};
use clap::Args;
use ratatui::{
    crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers},
    layout::{Constraint, Layout},
    style::{Color, Modifier, Style},
    text::Line,
    widgets::{Cell, Paragraph, Row as TableRow, Table, TableState},
    DefaultTerminal, Frame,
};

use super::{
    client::{self, Agent, Failure},
    cluster,
    render::human_bytes,
    table::{self, Group, Mark, Pair, Rates, Row},
};
use crate::api::{Answer, Class, FlowList, FlowsEndpoint, Summary, SummaryEndpoint};

#[derive(Debug, Args)]
pub struct TopArgs {
    #[command(flatten)]
    agent: client::AgentArgs,
    #[command(flatten)]
    cluster: cluster::ClusterArgs,
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

/// Service pairs (the default) or every connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum View {
    Pairs,
    Connections,
}

/// One group's identity across reads, to keep it open.
type GroupId = (String, String, Mark, Pair);

fn group_id(g: &Group) -> GroupId {
    (g.node.clone(), g.network.clone(), g.mark, g.pair.clone())
}

/// Who to ask: the one agent, or every node's.
enum Source {
    One(Agent),
    Cluster(Vec<cluster::Member>),
}

/// One node's answer to a read: its flows and summary, or why not.
struct NodeRead {
    /// Empty for the one agent.
    node: String,
    answer: Result<(FlowList, Summary), String>,
}

fn read_one(agent: &Agent) -> Result<(FlowList, Summary), Failure> {
    Ok((
        client::fetch::<FlowsEndpoint>(agent)?,
        client::fetch::<SummaryEndpoint>(agent)?,
    ))
}

fn read(source: &Source) -> Vec<NodeRead> {
    match source {
        Source::One(agent) => vec![NodeRead {
            node: String::new(),
            answer: read_one(agent).map_err(|e| e.to_string()),
        }],
        Source::Cluster(members) => cluster::ask_each(members, read_one)
            .nodes
            .into_iter()
            .map(|n| {
                let status = n.answer.status();
                NodeRead {
                    node: n.node,
                    answer: match n.answer {
                        Answer::Ok { data } => Ok(data),
                        Answer::Down { error }
                        | Answer::Slow { error }
                        | Answer::Refused { error }
                        | Answer::Incompatible { error }
                        | Answer::Failed { error } => Err(format!("{status}: {error}")),
                    },
                }
            })
            .collect(),
    }
}

struct App {
    /// What is asked, for the header.
    asked: String,
    cluster: bool,
    rates: HashMap<String, Rates>,
    rows: Vec<Row>,
    summaries: Vec<Summary>,
    /// Nodes (or the agent) whose last read failed, with why: shown in the
    /// header (an agent may restart).
    errors: Vec<String>,
    nodes_answered: usize,
    nodes_asked: usize,
    sort: Sort,
    class: ClassFilter,
    filter: String,
    editing: bool,
    view: View,
    /// Index of the selected pair among the visible ones.
    selected: usize,
    open: HashSet<GroupId>,
}

impl App {
    fn new(asked: String, cluster: bool) -> App {
        App {
            asked,
            cluster,
            rates: HashMap::new(),
            rows: Vec::new(),
            summaries: Vec::new(),
            errors: Vec::new(),
            nodes_answered: 0,
            nodes_asked: 0,
            sort: Sort::Rate,
            class: ClassFilter::All,
            filter: String::new(),
            editing: false,
            view: View::Pairs,
            selected: 0,
            open: HashSet::new(),
        }
    }

    fn update(&mut self, reads: Vec<NodeRead>) {
        self.rows.clear();
        self.summaries.clear();
        self.errors.clear();
        self.nodes_asked = reads.len();
        self.nodes_answered = 0;
        for r in reads {
            match r.answer {
                Ok((list, summary)) => {
                    let rates = self.rates.entry(r.node.clone()).or_default();
                    self.rows
                        .extend(rates.rows(&list.flows).into_iter().map(|mut row| {
                            row.node.clone_from(&r.node);
                            row
                        }));
                    self.summaries.push(summary);
                    self.nodes_answered += 1;
                }
                Err(e) if r.node.is_empty() => self.errors.push(e),
                Err(e) => self.errors.push(format!("{}: {e}", r.node)),
            }
        }
    }

    fn matches(&self, fields: &[&str], mark: Mark) -> bool {
        let needle = self.filter.to_lowercase();
        self.class.admits(mark)
            && (needle.is_empty()
                || fields.iter().any(|f| f.to_lowercase().contains(&needle))
                || mark.label().to_lowercase().contains(&needle))
    }

    /// Every connection to show, filtered and sorted.
    fn visible_rows(&self) -> Vec<&Row> {
        let mut rows: Vec<&Row> = self
            .rows
            .iter()
            .filter(|r| self.matches(&[&r.node, &r.network, &r.src, &r.dst, &r.peer], r.mark))
            .collect();
        match self.sort {
            Sort::Rate => rows.sort_by(|a, b| b.bps.total_cmp(&a.bps).then(b.bytes.cmp(&a.bytes))),
            Sort::Bytes => rows.sort_by_key(|r| std::cmp::Reverse(r.bytes)),
            Sort::Name => rows.sort_by(|a, b| {
                (&a.node, &a.network, &a.src, &a.dst).cmp(&(&b.node, &b.network, &b.src, &b.dst))
            }),
        }
        rows
    }

    /// Every service pair to show, filtered and sorted.
    fn visible_groups(&self) -> Vec<Group> {
        let mut groups: Vec<Group> = table::groups(&self.rows)
            .into_iter()
            .filter(|g| {
                self.matches(
                    &[&g.node, &g.network, &g.pair.client, &g.pair.server],
                    g.mark,
                )
            })
            .collect();
        match self.sort {
            Sort::Rate => {
                groups.sort_by(|a, b| b.bps.total_cmp(&a.bps).then(b.bytes.cmp(&a.bytes)))
            }
            Sort::Bytes => groups.sort_by_key(|g| std::cmp::Reverse(g.bytes)),
            Sort::Name => groups.sort_by(|a, b| {
                (&a.node, &a.network, &a.pair).cmp(&(&b.node, &b.network, &b.pair))
            }),
        }
        groups
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
            KeyCode::Char('g') => {
                self.view = match self.view {
                    View::Pairs => View::Connections,
                    View::Connections => View::Pairs,
                }
            }
            KeyCode::Up => self.selected = self.selected.saturating_sub(1),
            KeyCode::Down => self.selected = self.selected.saturating_add(1),
            KeyCode::Enter | KeyCode::Right | KeyCode::Left if self.view == View::Pairs => {
                if let Some(g) = self.visible_groups().get(self.selected) {
                    let id = group_id(g);
                    if !self.open.remove(&id) && code != KeyCode::Left {
                        self.open.insert(id);
                    }
                }
            }
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
    let mut classes = crate::api::ClassCounts::default();
    let (mut flows, mut alerts, mut docker_up) = (0, 0, 0);
    for s in &app.summaries {
        classes += s.totals.classes;
        flows += s.totals.flow_count;
        alerts += s.alerts;
        docker_up += usize::from(s.docker_up);
    }
    let class = |c: Class| {
        let n = classes.get(c);
        format!("{c} {} pkts {}", n.packets, human_bytes(n.bytes))
    };
    let plain_on_encrypted = app
        .rows
        .iter()
        .filter(|r| r.mark == Mark::PlainOnEncrypted)
        .count();
    let mut first = if app.cluster {
        format!(
            "netobs top --cluster  via {}  nodes {} of {} answered  flows {flows}  docker up on {docker_up}",
            app.asked, app.nodes_answered, app.nodes_asked
        )
    } else {
        format!(
            "netobs top  agent {}  flows {flows}  docker {}",
            app.asked,
            if docker_up > 0 { "up" } else { "down" }
        )
    };
    if !app.errors.is_empty() {
        first.push_str(&format!("  ERROR: {}", app.errors.join("; ")));
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
        Line::from(first),
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

/// A table's column widths and header: (title, width, 0 for the rest of the
/// line), after the node's column in the cluster view.
fn layout(cluster: bool, columns: &[(&'static str, u16)]) -> (Vec<Constraint>, TableRow<'static>) {
    let all: Vec<(&'static str, u16)> = cluster
        .then_some(("node", 22))
        .into_iter()
        .chain(columns.iter().copied())
        .collect();
    let widths = all
        .iter()
        .map(|(_, w)| match w {
            0 => Constraint::Min(10),
            w => Constraint::Length(*w),
        })
        .collect();
    let head = TableRow::new(all.iter().map(|(t, _)| *t).collect::<Vec<_>>())
        .style(Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED));
    (widths, head)
}

/// The rate and total cells a pair and its connections share.
fn traffic_cells(
    pps: f64,
    bps: f64,
    rps: f64,
    requests: u64,
    bytes: u64,
    last: &str,
) -> [Cell<'static>; 6] {
    [
        Cell::from(format!("{pps:.0}")),
        Cell::from(human_bytes(bps as u64)),
        Cell::from(format!("{rps:.1}")),
        Cell::from(requests.to_string()),
        Cell::from(human_bytes(bytes)),
        Cell::from(last.to_owned()),
    ]
}

/// The table of service pairs, each open one followed by its connections;
/// and the line of the selected pair.
fn pairs_table(app: &App) -> (Table<'static>, Option<usize>) {
    let groups = app.visible_groups();
    let selected = app.selected.min(groups.len().saturating_sub(1));
    let mut lines = Vec::new();
    let mut selected_line = None;
    for (i, g) in groups.iter().enumerate() {
        if i == selected {
            selected_line = Some(lines.len());
        }
        let mut cells = Vec::new();
        if app.cluster {
            cells.push(Cell::from(g.node.clone()));
        }
        let open = app.open.contains(&group_id(g));
        cells.extend([
            Cell::from(format!("{} {}", if open { "-" } else { "+" }, g.network)),
            Cell::from(g.mark.label()).style(mark_style(g.mark)),
            Cell::from(g.pair.client.clone()),
            Cell::from(g.pair.server.clone()),
            Cell::from((g.open + g.finished).to_string()),
            Cell::from(g.finished.to_string()),
        ]);
        cells.extend(traffic_cells(
            g.pps,
            g.bps,
            g.rps,
            g.requests,
            g.bytes,
            &g.last_request,
        ));
        lines.push(TableRow::new(cells));
        if !open {
            continue;
        }
        for r in g.rows.iter().filter_map(|i| app.rows.get(*i)) {
            let mut cells = Vec::new();
            if app.cluster {
                cells.push(Cell::from(""));
            }
            cells.extend([
                Cell::from(format!("    {}", r.id)),
                Cell::from(""),
                Cell::from(format!("  {}", r.src)),
                Cell::from(format!("  {}", r.dst)),
                Cell::from(r.state.label()),
                Cell::from(""),
            ]);
            cells.extend(traffic_cells(
                r.pps,
                r.bps,
                r.rps,
                r.requests,
                r.bytes,
                &r.last_request,
            ));
            lines.push(TableRow::new(cells).style(Style::new().add_modifier(Modifier::DIM)));
        }
    }
    let (widths, head) = layout(
        app.cluster,
        &[
            ("network", 14),
            ("class", 8),
            ("client", 20),
            ("server", 20),
            ("conns", 8),
            ("finished", 8),
            ("pkt/s", 7),
            ("B/s", 9),
            ("req/s", 7),
            ("requests", 9),
            ("bytes", 9),
            ("last request", 0),
        ],
    );
    let table = Table::new(lines, widths)
        .header(head)
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED));
    (table, selected_line)
}

/// Every connection, one row per flow.
fn connections_table(app: &App) -> Table<'static> {
    let rows: Vec<TableRow> = app
        .visible_rows()
        .into_iter()
        .map(|r| {
            let mut cells = Vec::new();
            if app.cluster {
                cells.push(Cell::from(r.node.clone()));
            }
            cells.extend([
                Cell::from(r.network.clone()),
                Cell::from(r.id.clone()),
                Cell::from(r.mark.label()).style(mark_style(r.mark)),
                Cell::from(r.peer.clone()),
                Cell::from(r.src.clone()),
                Cell::from(r.dst.clone()),
                Cell::from(r.state.label()),
                Cell::from(format!("{:.0}", r.pps)),
                Cell::from(human_bytes(r.bps as u64)),
                Cell::from(r.packets.to_string()),
                Cell::from(human_bytes(r.bytes)),
                Cell::from(r.last_request.clone()),
            ]);
            TableRow::new(cells)
        })
        .collect();
    let (widths, head) = layout(
        app.cluster,
        &[
            ("network", 12),
            ("vni/spi", 10),
            ("class", 8),
            ("peer", 14),
            ("source", 20),
            ("destination", 20),
            ("state", 8),
            ("pkt/s", 8),
            ("B/s", 9),
            ("packets", 10),
            ("bytes", 9),
            ("last request", 0),
        ],
    );
    Table::new(rows, widths).header(head)
}

fn draw(frame: &mut Frame, app: &App) {
    let [top, body, bottom] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    frame.render_widget(Paragraph::new(header(app)), top);
    match app.view {
        View::Pairs => {
            let (table, selected) = pairs_table(app);
            let mut state = TableState::default().with_selected(selected);
            frame.render_stateful_widget(table, body, &mut state);
        }
        View::Connections => frame.render_widget(connections_table(app), body),
    }

    let filter = if app.editing {
        format!("filter: {}_", app.filter)
    } else if app.filter.is_empty() {
        "/ filter".to_owned()
    } else {
        format!("/ filter: {} (esc clears)", app.filter)
    };
    let view = match app.view {
        View::Pairs => "g view: pairs (enter opens)",
        View::Connections => "g view: connections",
    };
    let keys = format!(
        "q quit   {view}   s sort: {}   c class: {}   {filter}",
        app.sort.label(),
        app.class.label()
    );
    frame.render_widget(
        Paragraph::new(keys).style(Style::new().add_modifier(Modifier::REVERSED)),
        bottom,
    );
}

fn run(
    terminal: &mut DefaultTerminal,
    mut app: App,
    reads: mpsc::Receiver<Vec<NodeRead>>,
) -> Result<()> {
    loop {
        while let Ok(r) = reads.try_recv() {
            app.update(r);
        }
        terminal
            .draw(|f| draw(f, &app))
            .context("drawing the screen")?;
        if event::poll(Duration::from_millis(100)).context("reading the keyboard")? {
            if let Event::Key(k) = event::read().context("reading the keyboard")? {
                if k.kind == KeyEventKind::Press && !app.key(k.code, k.modifiers) {
                    return Ok(());
                }
            }
        }
    }
}

pub fn top(args: TopArgs) -> Result<ExitCode> {
    // Fail in one line before taking the terminal over.
    let (source, asked) = if args.cluster.cluster {
        let members = match cluster::members_or_exit(&args.agent, &args.cluster) {
            Ok(m) => m,
            Err(code) => return Ok(code),
        };
        (Source::Cluster(members), args.agent.agent.to_string())
    } else {
        let agent = args.agent.agent()?;
        client::fetch::<SummaryEndpoint>(&agent)?;
        let asked = agent.to_string();
        (Source::One(agent), asked)
    };
    let app = App::new(asked, args.cluster.cluster);
    let (tx, rx) = mpsc::channel();
    // The reader stops once the screen is gone (its next send fails).
    std::thread::spawn(move || loop {
        if tx.send(read(&source)).is_err() {
            return;
        }
        std::thread::sleep(REFRESH);
    });
    // ratatui::init also restores the terminal if we panic.
    let mut terminal = ratatui::init();
    let result = run(&mut terminal, app, rx);
    ratatui::restore();
    result.map(|()| ExitCode::SUCCESS)
}
