"""`vidclinic loadtest`: simulated patients, dashboards and calls against a running deployment,
through its public entry points only (pages, forms, WebSockets, WebRTC), as browsers use them.

- `media`: synthetic audio and video (encoded once, replayed by every participant);
- `peer`: one participant's peer connection, offered as a browser offers it, counting what each
  receive slot gets without decoding it;
- `client`: HTTP forms with cookies and CSRF tokens, and sockets carrying those cookies;
- `runner`: the plan (how many, how fast, how long), the ramp, the live line and the report.
"""
