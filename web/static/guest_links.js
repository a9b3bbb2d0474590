/* "Create guest link": make a link to this room, copy it or send it by email or SMS, and see
   every link's state (and each send's: queued, sent, failed) with "Revoke". */
"use strict";

(() => {
  const section = document.querySelector("[data-guest-links]");
  if (!section) return;
  const config = JSON.parse(document.getElementById("links-config").textContent);
  const strings = config.strings;
  const dialog = section.querySelector("[data-links-dialog]");
  const newLink = section.querySelector("[data-new-link]");
  const made = section.querySelector("[data-made-link]");
  const address = section.querySelector("[data-link-address]");
  const sendForm = section.querySelector("[data-send-link]");
  const status = section.querySelector("[data-links-status]");
  const list = section.querySelector("[data-link-list]");
  let current = null; // the link just made: {link, url, token}
  let refresh = null;

  async function call(url, body) {
    const response = await fetch(url, {
      method: body === undefined ? "GET" : "POST",
      headers: { "Content-Type": "application/json", "X-CSRFToken": config.csrf, Accept: "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
    });
    const data = await response.json().catch(() => ({}));
    return { ok: response.ok, data };
  }

  function showErrors(form, errors) {
    form.querySelectorAll("[data-error-for]").forEach((el) => {
      el.textContent = (errors[el.dataset.errorFor] || []).join(" ");
    });
  }

  function when(iso) { return new Date(iso).toLocaleString(); }

  function render(links) {
    list.replaceChildren(...links.map((link) => {
      const item = document.createElement("li");
      const parts = [strings[link.state], strings.until.replace("{time}", when(link.expires_at))];
      if (link.single_use) parts.push(strings.singleUse);
      if (link.guest_name) parts.push(strings.for.replace("{name}", link.guest_name));
      const text = document.createElement("span");
      text.textContent = parts.join(" · ");
      item.append(text);
      link.deliveries.forEach((d) => {
        const sent = document.createElement("span");
        const state = d.state === "failed" ? strings.failed.replace("{reason}", d.error) : strings[d.state];
        sent.textContent = ` · ${d.to}: ${state}`;
        sent.dataset.delivery = d.state;
        item.append(sent);
      });
      if (link.state === "active") {
        const revoke = document.createElement("button");
        revoke.type = "button";
        revoke.textContent = strings.revoke;
        revoke.setAttribute("aria-label", strings.revokeLabel.replace("{time}", when(link.expires_at)));
        revoke.addEventListener("click", async () => {
          await call(link.revoke_url, {});
          load();
        });
        item.append(" ", revoke);
      }
      return item;
    }));
    // A send on its way is watched until it settles.
    const pending = links.some((l) => l.deliveries.some((d) => d.state === "queued"));
    clearTimeout(refresh);
    if (pending) refresh = setTimeout(load, 1500);
  }

  async function load() {
    const { ok, data } = await call(config.url);
    if (ok) render(data.links);
  }

  section.querySelector("[data-open-links]").addEventListener("click", () => {
    newLink.hidden = false;
    made.hidden = true;
    address.value = "";
    current = null;
    status.textContent = "";
    dialog.showModal();
  });
  section.querySelector("[data-close-links]").addEventListener("click", () => dialog.close());

  newLink.addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = new FormData(newLink);
    const { ok, data } = await call(config.url, {
      hours: Number(form.get("hours")),
      single_use: form.get("single_use") === "on",
      guest_name: form.get("guest_name") || "",
    });
    showErrors(newLink, ok ? {} : data.errors || {});
    if (!ok) return;
    current = data;
    address.value = data.url;
    newLink.hidden = true;
    made.hidden = false;
    address.focus();
    address.select();
    load();
  });

  section.querySelector("[data-copy-link]").addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(address.value);
    } catch (e) {
      address.select();
      document.execCommand("copy");
    }
    status.textContent = strings.copied;
  });

  sendForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!current) return;
    const form = new FormData(sendForm);
    status.textContent = strings.sending;
    const { ok, data } = await call(current.link.send_url, {
      token: current.token, channel: form.get("channel"), to: form.get("to") || "",
    });
    showErrors(sendForm, ok ? {} : data.errors || {});
    status.textContent = ok ? "" : strings.error;
    load();
  });

  load();
})();
