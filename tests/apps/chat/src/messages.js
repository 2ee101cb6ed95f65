// Message shapes shared by the room and the Worker.

export const HISTORY = 20;

export function chat(name, text) {
  return JSON.stringify({ type: "message", name, text });
}

export function presence(type, name) {
  return JSON.stringify({ type, name });
}
