// socket.io peer for bench/peers.py: the same fan-out scenario as bench/fanout.py, done the
// socket.io way (a room broadcast, encoded once per broadcast by the adapter).
// Listens on 127.0.0.1, port 0, WebSocket transport only, no permessage-deflate; prints the port.
//   join (room, ack?)  -> socket.join(room), then ack (so a receiver knows it is in the room)
//   update (payload)   -> socket.to(payload.room).emit("state", payload)
const http = require("node:http");
const { Server } = require("socket.io");

const httpServer = http.createServer();
const io = new Server(httpServer, {
  transports: ["websocket"],
  perMessageDeflate: false,
  httpCompression: false,
  serveClient: false,
});

io.on("connection", (socket) => {
  socket.on("join", (room, ack) => {
    socket.join(room);
    if (typeof ack === "function") ack();
  });
  socket.on("update", (payload) => {
    socket.to(payload.room).emit("state", payload);
  });
});

httpServer.listen(0, "127.0.0.1", () => {
  console.log(httpServer.address().port);
});
for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, () => process.exit(0));
