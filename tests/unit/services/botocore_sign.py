"""Signs requests with botocore (Debian's python3-botocore), the reference
S3 client, for the SigV4 cross-check. Input: a JSON file with a list of
{method, url, headers, body, region, access_key, secret_key, token, time,
expires}; expires 0 signs headers, otherwise a presigned URL. Output (stdout):
a list of {"signature", "signed_headers"}."""
import datetime
import json
import sys
from unittest import mock

from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

out = []
for r in json.load(open(sys.argv[1])):
    creds = Credentials(r["access_key"], r["secret_key"], r["token"] or None)
    request = AWSRequest(method=r["method"], url=r["url"], headers=r["headers"],
                         data=r["body"].encode())
    now = datetime.datetime.utcfromtimestamp(r["time"])
    with mock.patch("botocore.auth.datetime") as dt:
        dt.datetime.utcnow.return_value = now
        if r["expires"]:
            S3SigV4QueryAuth(creds, "s3", r["region"], expires=r["expires"]).add_auth(request)
            query = dict(p.split("=", 1) for p in request.url.split("?", 1)[1].split("&"))
            out.append({"signature": query["X-Amz-Signature"],
                        "signed_headers": query["X-Amz-SignedHeaders"]})
        else:
            S3SigV4Auth(creds, "s3", r["region"]).add_auth(request)
            auth = request.headers["Authorization"]
            out.append({"signature": auth.split("Signature=")[1],
                        "signed_headers": auth.split("SignedHeaders=")[1].split(",")[0]})
print(json.dumps(out))
