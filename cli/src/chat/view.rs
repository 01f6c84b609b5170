//! Draws the chat: conversations on the left (with unread counts), the open conversation's
//! history on the right (each of our messages with its state, each received one with the path
//! that brought it),
//! the input line below and a status line at the bottom.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, List, ListItem, ListState, Paragraph, Wrap};

use super::app::App;
use crate::output::MessageLines;

pub fn render(app: &App, frame: &mut Frame) {
    let [main, input, status] =
        Layout::vertical([Constraint::Min(3), Constraint::Length(3), Constraint::Length(1)]).areas(frame.area());
    let [list, history] = Layout::horizontal([Constraint::Length(24), Constraint::Min(10)]).areas(main);
    conversations(app, frame, list);
    messages(app, frame, history);
    frame.render_widget(
        Paragraph::new(format!("> {}", app.input)).block(Block::default().borders(Borders::ALL).title(" message ")),
        input,
    );
    // The cursor sits after what was typed.
    frame.set_cursor_position((input.x + 3 + app.input.chars().count() as u16, input.y + 1));
    let notice = if app.notice.is_empty() { String::new() } else { format!(" · {}", app.notice) };
    let accept = app.requests.first().map(|name| format!(" · Ctrl-A accept {name}")).unwrap_or_default();
    frame.render_widget(
        Paragraph::new(format!(
            "{} · {} peer(s){notice}{accept} · ↑↓ conversation · PgUp/PgDn history · Enter send · Esc quit",
            app.me, app.peers
        )),
        status,
    );
}

fn conversations(app: &App, frame: &mut Frame, area: Rect) {
    let items: Vec<ListItem> = app
        .conversations
        .iter()
        .map(|c| {
            let unread = if c.unread > 0 { format!(" ({})", c.unread) } else { String::new() };
            let kind = if c.group { "#" } else { "@" };
            ListItem::new(format!("{kind}{}{unread}", c.name))
        })
        .collect();
    let list = List::new(items)
        .block(Block::default().borders(Borders::ALL).title(" conversations "))
        .highlight_style(Style::default().add_modifier(Modifier::REVERSED));
    let mut state = ListState::default().with_selected((!app.conversations.is_empty()).then_some(app.selected));
    frame.render_stateful_widget(list, area, &mut state);
}

fn messages(app: &App, frame: &mut Frame, area: Rect) {
    let title = match app.current() {
        None => " no conversations yet: add a contact with `weft contact add LINK` ".to_owned(),
        Some(c) if c.group => {
            format!(" {} · {} members{} ", c.name, c.members, if c.active { "" } else { " · you were removed" })
        }
        Some(c) => format!(
            " {} · {} ",
            c.name,
            if c.verified == Some(true) { "verified ✓" } else { "not verified (weft contact verify)" }
        ),
    };
    let title =
        if app.scroll_back > 0 { format!("{title}· {} newer below (PgDn, End) ", app.scroll_back) } else { title };
    let shown = &app.messages[..app.messages.len() - app.scroll_back.min(app.messages.len())];
    let lines: Vec<Line> = shown.iter().map(|m| Line::from(m.line_with_path())).collect();
    // Long messages wrap; the newest sits at the bottom, and what does not fit scrolls off the top.
    let block = Block::default().borders(Borders::ALL).title(title);
    let inner = block.inner(area);
    let paragraph = Paragraph::new(lines).wrap(Wrap { trim: false });
    let overflow = paragraph.line_count(inner.width).saturating_sub(inner.height as usize);
    frame.render_widget(paragraph.scroll((overflow.min(u16::MAX as usize) as u16, 0)).block(block), area);
}

#[cfg(test)]
mod tests {
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    use super::*;
    use crate::chat::app::Conversation;
    use crate::rpc::answer::Message;

    fn message(id: &str, sender: &str, outgoing: bool, body: &str, state: Option<&str>) -> Message {
        Message {
            id: id.into(),
            lamport: 1,
            conversation: "bob".into(),
            sender: sender.into(),
            outgoing,
            sent_ms: 1_700_000_000_000,
            kind: "text".into(),
            body: body.into(),
            state: state.map(str::to_owned),
            via: (!outgoing).then(|| "mesh".to_owned()),
            reply_to: None,
            edited: false,
            deleted: false,
            reactions: Vec::new(),
            changed_by: None,
            attachment: None,
        }
    }

    fn screen(app: &App, width: u16, height: u16) -> String {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal.draw(|f| render(app, f)).unwrap();
        let buffer = terminal.backend().buffer().clone();
        (0..height)
            .map(|y| (0..width).map(|x| buffer[(x, y)].symbol().to_owned()).collect::<String>().trim_end().to_owned())
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn app() -> App {
        let mut app = App { me: "alice".into(), peers: 2, input: "on my w".into(), ..App::default() };
        app.set_conversations(vec![
            Conversation {
                name: "bob".into(),
                id: "b0b".into(),
                group: false,
                members: 2,
                active: true,
                unread: 0,
                verified: Some(true),
            },
            Conversation {
                name: "crew".into(),
                id: "c4e3".into(),
                group: true,
                members: 4,
                active: true,
                unread: 3,
                verified: None,
            },
        ]);
        app.messages = vec![
            message("1", "bob", false, "where are you?", None),
            message("2", "alice", true, "at the gate", Some("read")),
            message("3", "alice", true, "coming", Some("delivered")),
        ];
        app
    }

    #[test]
    fn draws_conversations_history_states_transports_and_input() {
        let screen = screen(&app(), 100, 14);
        for expected in [
            "@bob",
            "#crew (3)",
            "bob · verified ✓",
            "bob: where are you?  (via mesh)",
            "alice: at the gate  [read]",
            "alice: coming  [delivered]",
            "> on my w",
            "alice · 2 peer(s)",
        ] {
            assert!(screen.contains(expected), "missing {expected:?} in:\n{screen}");
        }
    }

    #[test]
    fn long_messages_wrap_and_the_newest_stays_in_view() {
        let mut app = app();
        let long = "word ".repeat(40);
        app.messages.push(message("4", "bob", false, long.trim(), None));
        app.messages.push(message("5", "bob", false, "last one", None));
        let screen = screen(&app, 80, 16);
        assert!(screen.contains("last one"), "{screen}");
        let wrapped = screen.lines().filter(|l| l.contains("word word")).count();
        assert!(wrapped >= 3, "a 200-character message takes several lines:\n{screen}");
    }

    #[test]
    fn reading_back_shows_older_messages_and_says_what_is_below() {
        let mut app = app();
        app.scroll_back = 2;
        let screen = screen(&app, 100, 14);
        assert!(screen.contains("where are you?"), "{screen}");
        assert!(!screen.contains("at the gate"), "{screen}");
        assert!(screen.contains("2 newer below"), "{screen}");
    }

    #[test]
    fn a_request_shows_how_to_accept_it() {
        let mut app = app();
        app.requests.push("dave".into());
        assert!(screen(&app, 140, 14).contains("Ctrl-A accept dave"));
    }

    #[test]
    fn a_small_terminal_keeps_the_newest_messages_and_does_not_panic() {
        let screen = screen(&app(), 60, 9);
        assert!(screen.contains("coming"), "{screen}");
        assert!(!screen.contains("where are you"), "the oldest scrolled away:\n{screen}");
        for (w, h) in [(1, 1), (10, 3), (24, 6)] {
            let _ = self::screen(&app(), w, h);
        }
    }
}
