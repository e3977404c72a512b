#include "Azure/ClientSecretCredential.h"
#include "Common/Clock.h"
#include "Common/Exception.h"
#include "LoopbackHttpServer.h"

#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <string>

using namespace AzureDicom;
using namespace AzureDicom::Testing;

namespace
{
const char TENANT_ID[] = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const char CLIENT_ID[] = "11111111-2222-3333-4444-555555555555";
const char SCOPE[] = "https://dicom.healthcareapis.azure.com/.default";
const char SECRET[] = "Xy8Q~abc+def/ghi=jkl&mno pqr";
const int64_t NOW_MS = 1700000000000;
const int64_t SECONDS_MS = 1000;

const char TOKEN_ANSWER[] =
    "{\"token_type\":\"Bearer\",\"expires_in\":3599,\"ext_expires_in\":3599,"
    "\"access_token\":\"eyJ0eXAiOiJKV1QifQ.eyJhdWQiOiJkaWNvbSJ9.c2lnbmF0dXJl\"}";

// The shape of Entra's response to a wrong client secret, with CR LF inside the description.
const char INVALID_SECRET_ANSWER[] =
    "{\"error\":\"invalid_client\",\"error_description\":\"AADSTS7000215: Invalid client secret "
    "provided. Ensure the secret being sent in the request is the client secret value, not the "
    "client secret ID.\\r\\nTrace ID: 0b5c4e1a-7c35-4a0e-9f4b-1d2e3f405060\\r\\nCorrelation ID: "
    "9a8b7c6d-5e4f-4a3b-2c1d-0e9f8a7b6c5d\\r\\nTimestamp: 2024-05-01 10:00:00Z\","
    "\"error_codes\":[7000215],\"timestamp\":\"2024-05-01 10:00:00Z\","
    "\"trace_id\":\"0b5c4e1a-7c35-4a0e-9f4b-1d2e3f405060\","
    "\"correlation_id\":\"9a8b7c6d-5e4f-4a3b-2c1d-0e9f8a7b6c5d\","
    "\"error_uri\":\"https://login.microsoftonline.com/error?code=7000215\"}";


HttpResponse MakeResponse(long status, const std::string& body)
{
  HttpResponse response;
  response.status = status;
  response.body = body;
  return response;
}


CannedResponse MakeCanned(int status, const std::string& body)
{
  CannedResponse canned;
  canned.status = status;
  canned.headers = {{"Content-Type", "application/json; charset=utf-8"}};
  canned.body = body;
  return canned;
}


class ClientSecretCredentialTest : public ::testing::Test
{
 protected:
  // A trailing slash on the authority host must not double the slash in the token URL.
  std::unique_ptr<ClientSecretCredential> MakeCredential()
  {
    return std::make_unique<ClientSecretCredential>(
        server_.GetUrl("/"), TENANT_ID, CLIENT_ID, SCOPE,
        [this]
        {
          secretReads_++;
          return secret_;
        },
        TlsSettings());
  }

  std::string GetTokenUrl()
  {
    return server_.GetUrl(std::string("/") + TENANT_ID + "/oauth2/v2.0/token");
  }

  // Requests a token and returns the AzureDicom::Exception that it throws.
  Exception RequestTokenError()
  {
    try
    {
      MakeCredential()->RequestToken();
    }
    catch (const Exception& e)
    {
      return e;
    }

    ADD_FAILURE() << "expected an AzureDicom::Exception";
    return Exception(ErrorCode::InternalError, "no exception");
  }

  static Exception ParseError(const HttpResponse& response)
  {
    try
    {
      ParseTokenResponse(response, "https://login.example/t/oauth2/v2.0/token", "ClientSecret",
                         NOW_MS);
    }
    catch (const Exception& e)
    {
      return e;
    }

    ADD_FAILURE() << "expected an AzureDicom::Exception";
    return Exception(ErrorCode::InternalError, "no exception");
  }

  LoopbackHttpServer server_;
  std::string secret_ = SECRET;
  int secretReads_ = 0;
};
}  // namespace


TEST_F(ClientSecretCredentialTest, SendsFormBody)
{
  server_.Enqueue(MakeCanned(200, TOKEN_ANSWER));

  MakeCredential()->RequestToken();

  const auto requests = server_.GetRequests();
  ASSERT_EQ(1u, requests.size());
  EXPECT_EQ("POST", requests[0].method);
  EXPECT_EQ(std::string("/") + TENANT_ID + "/oauth2/v2.0/token", requests[0].target);
  EXPECT_EQ("application/x-www-form-urlencoded", requests[0].GetHeader("content-type"));

  const auto fields = ParseFormBody(requests[0].body);
  EXPECT_EQ(4u, fields.size());
  EXPECT_EQ("client_credentials", fields.at("grant_type"));
  EXPECT_EQ(CLIENT_ID, fields.at("client_id"));
  EXPECT_EQ(SECRET, fields.at("client_secret"));
  EXPECT_EQ(SCOPE, fields.at("scope"));
}


TEST_F(ClientSecretCredentialTest, ParsesToken)
{
  server_.Enqueue(MakeCanned(200, TOKEN_ANSWER));

  const int64_t before = NowMs();
  const AccessToken token = MakeCredential()->RequestToken();
  const int64_t after = NowMs();

  EXPECT_EQ("eyJ0eXAiOiJKV1QifQ.eyJhdWQiOiJkaWNvbSJ9.c2lnbmF0dXJl", token.value);
  EXPECT_GE(token.expiresOn, before + 3599 * SECONDS_MS);
  EXPECT_LE(token.expiresOn, after + 3599 * SECONDS_MS);
}


TEST_F(ClientSecretCredentialTest, ReadsSecretEachRequest)
{
  server_.Enqueue(MakeCanned(200, TOKEN_ANSWER));
  server_.Enqueue(MakeCanned(200, TOKEN_ANSWER));
  auto credential = MakeCredential();

  credential->RequestToken();
  secret_ = "rotated-secret";
  credential->RequestToken();

  const auto requests = server_.GetRequests();
  ASSERT_EQ(2u, requests.size());
  EXPECT_EQ(SECRET, ParseFormBody(requests[0].body).at("client_secret"));
  EXPECT_EQ("rotated-secret", ParseFormBody(requests[1].body).at("client_secret"));
  EXPECT_EQ(2, secretReads_);
}


TEST_F(ClientSecretCredentialTest, EntraErrorKeepsCode)
{
  server_.Enqueue(MakeCanned(401, INVALID_SECRET_ANSWER));

  const Exception e = RequestTokenError();
  const std::string message = e.what();

  EXPECT_EQ(ErrorCode::Unauthorized, e.GetCode());
  EXPECT_EQ(0u, message.find("ClientSecret credential: the token request to " + GetTokenUrl() +
                             " failed with HTTP 401: invalid_client: AADSTS7000215: Invalid "
                             "client secret provided."))
      << message;
  EXPECT_NE(std::string::npos, message.find("Trace ID: 0b5c4e1a-7c35-4a0e-9f4b-1d2e3f405060"))
      << message;
  EXPECT_EQ(std::string::npos, message.find('\r')) << message;
  EXPECT_EQ(std::string::npos, message.find('\n')) << message;
}


TEST_F(ClientSecretCredentialTest, EchoedSecretRedacted)
{
  server_.Enqueue(MakeCanned(
      400, std::string("{\"error\":\"invalid_request\",\"error_description\":\"AADSTS50011: "
                       "the value ") +
               SECRET + " is not valid.\",\"error_codes\":[50011]}"));

  const Exception e = RequestTokenError();
  const std::string message = e.what();

  EXPECT_EQ(ErrorCode::Unauthorized, e.GetCode());
  EXPECT_EQ(std::string::npos, message.find(SECRET)) << message;
  EXPECT_EQ(std::string::npos, message.find("ghi=jkl")) << message;
  EXPECT_NE(std::string::npos, message.find("the value [REDACTED] is not valid")) << message;
}


TEST_F(ClientSecretCredentialTest, EncodedEchoRedacted)
{
  CannedResponse echo;
  echo.status = 400;
  echo.body = "rejected form: " + std::string("client_secret=") + UrlEncode(SECRET);
  server_.Enqueue(echo);

  const std::string message = RequestTokenError().what();

  EXPECT_EQ(std::string::npos, message.find(UrlEncode(SECRET))) << message;
  EXPECT_EQ(std::string::npos, message.find("ghi%3Djkl")) << message;
  EXPECT_NE(std::string::npos, message.find("client_secret=[REDACTED]")) << message;
}


TEST_F(ClientSecretCredentialTest, UnicodeEscapedEchoRedacted)
{
  // System.Text.Json escapes '+' and '&' as \u002B and \u0026, a form that matches none of the
  // secret's raw forms until the JSON is decoded.
  server_.Enqueue(
      MakeCanned(400,
                 "{\"error\":\"invalid_request\",\"error_description\":\"AADSTS50011: "
                 "the value Xy8Q~abc\\u002Bdef/ghi=jkl\\u0026mno pqr is not valid.\"}"));

  const std::string message = RequestTokenError().what();

  EXPECT_EQ(std::string::npos, message.find(SECRET)) << message;
  EXPECT_NE(std::string::npos, message.find("the value [REDACTED] is not valid")) << message;
}


TEST_F(ClientSecretCredentialTest, SecretCutByExcerptRedacted)
{
  // The excerpt is cut after 300 characters: the echoed secret straddles the cut.
  const std::string padding(290, 'p');
  CannedResponse echo;
  echo.status = 400;
  echo.body = padding + SECRET;
  server_.Enqueue(echo);

  const std::string message = RequestTokenError().what();

  EXPECT_EQ(std::string::npos, message.find("Xy8Q~abc")) << message;
  EXPECT_NE(std::string::npos, message.find(padding)) << message;
}


TEST_F(ClientSecretCredentialTest, PartialEchoRedacted)
{
  // A gateway's error page that quotes the start of the form's secret.
  CannedResponse echo;
  echo.status = 400;
  echo.headers = {{"Content-Type", "text/html"}};
  echo.body = "<p>rejected client_secret=" + std::string(SECRET).substr(0, 20) + "</p>";
  server_.Enqueue(echo);

  const std::string message = RequestTokenError().what();

  EXPECT_EQ(std::string::npos, message.find("Xy8Q~abc")) << message;
  EXPECT_NE(std::string::npos, message.find("rejected client_secret=[REDACTED]</p>")) << message;
}


TEST_F(ClientSecretCredentialTest, NonJsonErrorExcerpt)
{
  CannedResponse gateway;
  gateway.status = 502;
  gateway.headers = {{"Content-Type", "text/html"}};
  gateway.body = "<html>\r\n  <body>Bad Gateway</body>\r\n</html>\r\n";
  server_.Enqueue(gateway);

  const Exception e = RequestTokenError();
  const std::string message = e.what();

  EXPECT_EQ(ErrorCode::Unauthorized, e.GetCode());
  EXPECT_NE(std::string::npos,
            message.find("failed with HTTP 502: <html> <body>Bad Gateway</body> </html>"))
      << message;
}


TEST_F(ClientSecretCredentialTest, RefusedPortNamesCredential)
{
  const int holder = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(holder, 0);
  sockaddr_in address = LoopbackHttpServer::MakeLoopbackAddress(0);
  socklen_t length = sizeof(address);
  ASSERT_EQ(0, bind(holder, reinterpret_cast<sockaddr*>(&address), sizeof(address)));
  ASSERT_EQ(0, getsockname(holder, reinterpret_cast<sockaddr*>(&address), &length));
  const std::string authority = "http://127.0.0.1:" + std::to_string(ntohs(address.sin_port));

  ClientSecretCredential credential(
      authority, TENANT_ID, CLIENT_ID, SCOPE, [] { return std::string(SECRET); }, TlsSettings());
  std::string message;
  ErrorCode code = ErrorCode::InternalError;
  try
  {
    credential.RequestToken();
  }
  catch (const Exception& e)
  {
    message = e.what();
    code = e.GetCode();
  }
  close(holder);

  EXPECT_EQ(ErrorCode::NetworkError, code);
  EXPECT_EQ(0u, message.find("ClientSecret credential: POST " + authority + "/" + TENANT_ID +
                             "/oauth2/v2.0/token: "))
      << message;
}


TEST_F(ClientSecretCredentialTest, EmptySecretRejected)
{
  secret_ = "";

  const Exception e = RequestTokenError();

  EXPECT_EQ(ErrorCode::Unauthorized, e.GetCode());
  EXPECT_NE(std::string::npos, std::string(e.what()).find(CLIENT_ID)) << e.what();
  EXPECT_EQ(0u, server_.GetRequests().size());
}


TEST_F(ClientSecretCredentialTest, MissingTenantRejected)
{
  try
  {
    ClientSecretCredential credential(
        server_.GetUrl(""), "", CLIENT_ID, SCOPE, [] { return std::string(SECRET); },
        TlsSettings());
    FAIL() << "expected an exception";
  }
  catch (const Exception& e)
  {
    EXPECT_EQ(ErrorCode::BadConfiguration, e.GetCode());
    EXPECT_NE(std::string::npos, std::string(e.what()).find("Credentials.TenantId is empty"))
        << e.what();
  }
}


TEST_F(ClientSecretCredentialTest, TypeAndPrincipal)
{
  const auto credential = MakeCredential();

  EXPECT_EQ("ClientSecret", credential->GetType());
  EXPECT_EQ(CLIENT_ID, credential->GetPrincipal());
}


TEST_F(ClientSecretCredentialTest, ExpiresInString)
{
  const AccessToken token = ParseTokenResponse(
      MakeResponse(200,
                   "{\"access_token\":\"abc\",\"token_type\":\"Bearer\",\"expires_in\":"
                   "\"3600\"}"),
      "https://login.example/t", "ManagedIdentity", NOW_MS);

  EXPECT_EQ("abc", token.value);
  EXPECT_EQ(NOW_MS + 3600 * SECONDS_MS, token.expiresOn);
}


TEST_F(ClientSecretCredentialTest, ExpiresOnEpoch)
{
  const AccessToken fromString = ParseTokenResponse(
      MakeResponse(200, "{\"access_token\":\"abc\",\"expires_on\":\"1700003600\"}"),
      "https://login.example/t", "ManagedIdentity", NOW_MS);
  const AccessToken fromNumber =
      ParseTokenResponse(MakeResponse(200, "{\"access_token\":\"abc\",\"expires_on\":1700007200}"),
                         "https://login.example/t", "ManagedIdentity", NOW_MS);

  EXPECT_EQ(1700003600 * SECONDS_MS, fromString.expiresOn);
  EXPECT_EQ(1700007200 * SECONDS_MS, fromNumber.expiresOn);
}


TEST_F(ClientSecretCredentialTest, MissingAccessTokenRejected)
{
  const Exception e = ParseError(MakeResponse(200, "{\"token_type\":\"Bearer\",\"expires_in\":1}"));

  EXPECT_EQ(ErrorCode::ProtocolError, e.GetCode());
  EXPECT_NE(std::string::npos, std::string(e.what()).find("access_token")) << e.what();
  EXPECT_NE(std::string::npos, std::string(e.what()).find("https://login.example/t/oauth2"))
      << e.what();
}


TEST_F(ClientSecretCredentialTest, MissingExpiryRejected)
{
  const Exception e = ParseError(MakeResponse(200, "{\"access_token\":\"abc\"}"));

  EXPECT_EQ(ErrorCode::ProtocolError, e.GetCode());
  EXPECT_NE(std::string::npos, std::string(e.what()).find("expires_in")) << e.what();
}


TEST_F(ClientSecretCredentialTest, NonNumericExpiryRejected)
{
  const Exception e =
      ParseError(MakeResponse(200, "{\"access_token\":\"abc\",\"expires_in\":\"soon\"}"));

  EXPECT_EQ(ErrorCode::ProtocolError, e.GetCode());
}


TEST_F(ClientSecretCredentialTest, ExpiredTokenRejected)
{
  const Exception e =
      ParseError(MakeResponse(200, "{\"access_token\":\"abc\",\"expires_on\":1600000000}"));

  EXPECT_EQ(ErrorCode::ProtocolError, e.GetCode());
  EXPECT_NE(std::string::npos, std::string(e.what()).find("expired")) << e.what();
}


TEST_F(ClientSecretCredentialTest, WrongTokenTypeRejected)
{
  const Exception e = ParseError(
      MakeResponse(200, "{\"access_token\":\"abc\",\"token_type\":\"pop\",\"expires_in\":60}"));

  EXPECT_EQ(ErrorCode::ProtocolError, e.GetCode());
  EXPECT_NE(std::string::npos, std::string(e.what()).find("\"pop\"")) << e.what();
}


TEST_F(ClientSecretCredentialTest, NonJsonSuccessRejected)
{
  const Exception e = ParseError(MakeResponse(200, "<html>login</html>"));

  EXPECT_EQ(ErrorCode::ProtocolError, e.GetCode());
  EXPECT_NE(std::string::npos, std::string(e.what()).find("not a JSON object (18 bytes"))
      << e.what();
}


TEST_F(ClientSecretCredentialTest, ErrorCodeFromList)
{
  const Exception e =
      ParseError(MakeResponse(400, "{\"error\":\"invalid_request\",\"error_codes\":[900144]}"));

  EXPECT_EQ(ErrorCode::Unauthorized, e.GetCode());
  EXPECT_NE(std::string::npos,
            std::string(e.what()).find("failed with HTTP 400: invalid_request: AADSTS900144"))
      << e.what();
}


TEST_F(ClientSecretCredentialTest, EmptyErrorBody)
{
  const Exception e = ParseError(MakeResponse(503, ""));

  EXPECT_EQ(ErrorCode::Unauthorized, e.GetCode());
  EXPECT_NE(std::string::npos, std::string(e.what()).find("HTTP 503: (empty body)")) << e.what();
}


TEST_F(ClientSecretCredentialTest, LongErrorBodyCut)
{
  const Exception e = ParseError(MakeResponse(500, std::string(5000, 'e')));
  const std::string message = e.what();

  EXPECT_LT(message.size(), 500u);
  EXPECT_EQ("...", message.substr(message.size() - 3));
}


TEST_F(ClientSecretCredentialTest, NonJsonSuccessNotQuoted)
{
  // A token endpoint that returns 200 in the wrong format still sends a token: the message must
  // describe the body without quoting it.
  const std::string token = "LEAKTOKEN60d76791320fe78c3cd54eff";
  for (const std::string& body :
       {"access_token=" + token + "&token_type=bearer&expires_in=3600",
        "[{\"access_token\": \"" + token + "\"}]"})
  {
    HttpResponse response = MakeResponse(200, body);
    try
    {
      ParseTokenResponse(response, "https://login.example/t/oauth2/v2.0/token", "ClientSecret",
                         1000);
      FAIL() << "a body that is not a JSON object must be rejected";
    }
    catch (const Exception& e)
    {
      EXPECT_EQ(ErrorCode::ProtocolError, e.GetCode());
      EXPECT_EQ(std::string::npos, std::string(e.what()).find(token)) << e.what();
      EXPECT_NE(std::string::npos, std::string(e.what()).find("not a JSON object")) << e.what();
    }
  }
}
