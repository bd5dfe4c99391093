// Lists the books and shows one with its reviews, through the gateway that served this page.
"use strict";

async function getJson(path) {
  const response = await fetch(path, { headers: { accept: "application/json" } });
  if (!response.ok) throw new Error(path + ": HTTP " + response.status);
  return response.json();
}

function text(tag, content) {
  const element = document.createElement(tag);
  element.textContent = content;
  return element;
}

async function showBook(id) {
  const detail = document.getElementById("detail");
  detail.hidden = false;
  detail.replaceChildren(text("p", "Loading…"));
  try {
    const [book, reviews] = await Promise.all([getJson("/books/" + id), getJson("/reviews/" + id)]);
    const stars = reviews.reviews.map((r) => "★".repeat(r.stars) + " " + r.text);
    detail.replaceChildren(
      text("h2", book.title),
      text("p", "Served by " + book.served_by),
      ...stars.map((line) => text("p", line)),
    );
  } catch (error) {
    detail.replaceChildren(text("p", String(error)));
  }
}

async function listBooks() {
  const list = document.getElementById("books");
  try {
    const { books } = await getJson("/books");
    list.replaceChildren(...books.map((book) => {
      const item = text("li", book.title);
      item.addEventListener("click", () => showBook(book.id));
      return item;
    }));
  } catch (error) {
    list.replaceChildren(text("li", String(error)));
  }
}

// The live feed, a WebSocket through the same gateway: how many readers are online.
function watchReaders() {
  const status = document.getElementById("live");
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  const socket = new WebSocket(scheme + location.host + "/app/live");
  socket.onmessage = (event) => {
    status.textContent = "Readers online: " + JSON.parse(event.data).readers_online;
  };
  socket.onclose = () => { status.textContent = "Live feed closed."; };
}

listBooks();
watchReaders();
