// A webhook consumer as a customer would write it: every delivery is checked
// with the standardwebhooks library, with the secret in the file WEBHOOK_SECRET_FILE and,
// as a control, with a wrong one (which must fail). Prints one JSON line per
// delivery; answers 204 when verified, 400 otherwise. The port goes to the
// file named by PORT_FILE.
const http = require("http");
const fs = require("fs");
const crypto = require("crypto");
const { Webhook } = require("standardwebhooks");

// Read per request: the test rotates the secret while the consumer runs.
const right = () => new Webhook(fs.readFileSync(process.env.WEBHOOK_SECRET_FILE, "utf8").trim());
const wrong = new Webhook("whsec_" + crypto.randomBytes(32).toString("base64"));

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const body = Buffer.concat(chunks).toString("utf8");
    let verified = false, type = null, wrongSecretAccepted = true;
    try {
      type = right().verify(body, req.headers).type;
      verified = true;
    } catch (e) {
      type = "unverified: " + e.message;
    }
    try {
      wrong.verify(body, req.headers);
    } catch (e) {
      wrongSecretAccepted = false;
    }
    console.log(JSON.stringify({ id: req.headers["webhook-id"], type, verified, wrongSecretAccepted }));
    res.writeHead(verified ? 204 : 400);
    res.end();
  });
});
server.listen(0, "127.0.0.1", () => fs.writeFileSync(process.env.PORT_FILE, String(server.address().port)));
