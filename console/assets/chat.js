// The chat demo's page: `gatework start --app chat`, then open /chat on
// the HTTP port. It speaks the line protocol of apps/chat (/name, /join,
// /who …) over the node's WebSocket listener, whose port and path the
// page's meta elements give. When the connection drops (the node restarts
// or reloads) it reconnects with exponential back-off, says so, and sets
// its name and room again.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const meta = (name) => document.querySelector(`meta[name="${name}"]`).content;
  const url = `${meta('gatework-ws-scheme')}://${location.hostname.includes(':') && !location.hostname.startsWith('[')
    ? '[' + location.hostname + ']' : location.hostname}:${meta('gatework-ws-port')}${meta('gatework-ws-path')}`;

  const backoffMinMs = 500;
  const backoffMaxMs = 10000;
  const maxLines = 1000;

  // chat is the page's state; tests read it as window.chat.
  const chat = {
    url,
    connected: false,
    reconnects: 0, // successful reconnections after a drop
    attempt: 0, // failed attempts since the last connection
    name: '', // the name the server confirmed
    room: '', // the room the server confirmed
    want: { name: '', room: '' }, // what the user asked for
    online: [],
    lines: [], // every line shown: {kind, text}
  };
  window.chat = chat;
  let ws = null;
  let helpSeen = false;
  let retryTimer = 0;

  function setConn(text, cls) {
    $('conn').textContent = text;
    $('conn').className = 'conn ' + cls;
  }

  // show appends a line: kind is notice, help, msg, mine, pm or sys.
  function show(kind, text, who) {
    chat.lines.push({ kind, text, who: who || '' });
    if (chat.lines.length > maxLines) chat.lines.shift();
    const li = document.createElement('li');
    li.className = kind;
    if (who) {
      const b = document.createElement('b');
      b.textContent = who + ': ';
      li.appendChild(b);
    }
    li.appendChild(document.createTextNode(text));
    const box = $('messages');
    const atEnd = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
    box.appendChild(li);
    while (box.children.length > maxLines) box.firstChild.remove();
    if (atEnd) box.scrollTop = box.scrollHeight;
  }

  function send(line) {
    if (ws && ws.readyState === WebSocket.OPEN) {
      ws.send(line);
      return true;
    }
    return false;
  }

  function renderOnline() {
    $('room-name').textContent = chat.room ? '#' + chat.room : '–';
    $('online').replaceChildren(...chat.online.map((n) => {
      const li = document.createElement('li');
      li.textContent = n === chat.name ? n + ' (you)' : n;
      return li;
    }));
  }

  function renderMe() {
    $('me').textContent = chat.name ? `${chat.name}${chat.room ? ' in #' + chat.room : ''}` : '';
    const ready = chat.connected && chat.name !== '' && chat.room !== '';
    $('text').disabled = !ready;
    $('say-btn').disabled = !ready;
  }

  // advance sends what is still needed to reach the wanted name and room.
  function advance() {
    if (!chat.connected) return;
    if (chat.want.name && chat.want.name !== chat.name) {
      send('/name ' + chat.want.name);
    } else if (chat.name && chat.want.room && chat.want.room !== chat.room) {
      send('/join ' + chat.want.room);
    }
  }

  // onLine handles one line from the server.
  function onLine(line) {
    let m;
    if ((m = /^\[pm (from|to) ([^\]]*)\] ([\s\S]*)$/.exec(line))) {
      show('pm', m[3], m[1] === 'from' ? `${m[2]} (private)` : `to ${m[2]} (private)`);
      return;
    }
    if ((m = /^\[([^\]]*)\] ([^:]*): ([\s\S]*)$/.exec(line))) {
      show('msg', m[3], m[2]);
      return;
    }
    if (!line.startsWith('* ')) {
      show('sys', line); // from the API or the console: shown as is
      return;
    }
    const text = line.slice(2);
    if (text.startsWith('welcome to the gatework chat') || text.startsWith('  ')) {
      if (!helpSeen) show('help', text);
      if (text.startsWith('  anything else')) helpSeen = true; // the last help line
      return;
    }
    if ((m = /^you are (?:now|already) (\S+)$/.exec(text))) {
      chat.name = m[1];
      chat.want.name = m[1];
      show('notice', text);
      renderMe();
      advance();
      return;
    }
    if ((m = /^the name (\S+) is taken$/.exec(text))) {
      show('notice', text + ': choose another name');
      chat.want.name = '';
      $('name').disabled = false;
      $('join-btn').disabled = false;
      return;
    }
    if ((m = /^you (?:joined|are already in) #(.+)$/.exec(text))) {
      chat.room = m[1];
      chat.want.room = m[1];
      show('notice', text);
      renderMe();
      send('/who');
      return;
    }
    if (/^you left #/.test(text)) {
      chat.room = '';
      chat.want.room = '';
      chat.online = [];
      show('notice', text);
      renderOnline();
      renderMe();
      return;
    }
    if ((m = /^in #(.+?): (.*)$/.exec(text))) {
      if (m[1] === chat.room) {
        chat.online = m[2].replace(/ \(some gateways did not answer\)$/, '').split(', ')
          .filter((n) => n && n !== '…');
        renderOnline();
      }
      return; // answers to our own /who are not shown
    }
    show('notice', text);
    if (/ (joined|left) #|is now known as /.test(text)) send('/who');
  }

  function connect() {
    clearTimeout(retryTimer);
    setConn(chat.reconnects || chat.attempt ? 'reconnecting…' : 'connecting…', '');
    ws = new WebSocket(url);
    ws.onopen = () => {
      const dropped = chat.attempt > 0 || chat.everConnected;
      chat.connected = true;
      chat.attempt = 0;
      if (dropped) {
        chat.reconnects++;
        show('notice', `reconnected to the server (reconnection ${chat.reconnects})`);
        setConn(`connected (reconnected ${chat.reconnects}×)`, 'up');
      } else {
        setConn('connected', 'up');
      }
      chat.everConnected = true;
      // The server forgot us: set the name and room again.
      chat.name = '';
      chat.room = '';
      advance();
      renderMe();
    };
    ws.onmessage = (ev) => {
      if (typeof ev.data === 'string') onLine(ev.data);
      else show('sys', '(binary message)');
    };
    ws.onclose = (ev) => {
      const was = chat.connected;
      chat.connected = false;
      chat.online = [];
      renderOnline();
      renderMe();
      const delay = Math.min(backoffMaxMs, backoffMinMs * 2 ** chat.attempt) * (0.75 + Math.random() * 0.5);
      chat.attempt++;
      if (was) show('notice', `disconnected (code ${ev.code}${ev.reason ? ', ' + ev.reason : ''})`);
      setConn(`disconnected: retrying in ${(delay / 1000).toFixed(1)} s (attempt ${chat.attempt})`, 'down');
      retryTimer = setTimeout(connect, delay);
    };
  }

  $('join').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const name = $('name').value.trim();
    const room = $('room').value.trim().replace(/^#/, '');
    if (!name || !room || /\s/.test(name) || /\s/.test(room)) {
      show('notice', 'a name and a room, without spaces');
      return;
    }
    chat.want = { name, room };
    advance();
  });

  $('say').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const text = $('text').value;
    if (!text.trim()) return;
    if (text.startsWith('/')) {
      if (send(text)) $('text').value = '';
      return;
    }
    if (send(text)) {
      show('mine', text, chat.name);
      $('text').value = '';
    }
  });

  renderMe();
  renderOnline();
  connect();
})();
