#include "Azure/Credential.h"
#include "Azure/Redaction.h"
#include "Azure/StowClient.h"
#include "Common/Clock.h"
#include "Common/Exception.h"

#include "LoopbackHttpServer.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>

using namespace AzureDicom;
using namespace AzureDicom::Testing;

namespace
{
const char SECRET[] = "Xy8Q~abc+def/ghi=jkl&mno pqr";
const char TOKEN[] = "eyJ0eXAiOiJKV1QifQ.eyJhdWQiOiJkaWNvbSJ9.c2lnbmF0dXJlLW9mLXRoZS10b2tlbg";
const int64_t HOUR_MS = 3600 * 1000;


// Returns TOKEN, valid for an hour.
class FixedCredential : public ICredential
{
public:
  AccessToken RequestToken() override
  {
    return AccessToken{TOKEN, NowMs() + HOUR_MS};
  }

  std::string GetType() const override
  {
    return "ClientSecret";
  }

  std::string GetPrincipal() const override
  {
    return "client";
  }
};


// Fails as a credential whose token endpoint cannot be reached.
class UnreachableCredential : public FixedCredential
{
public:
  AccessToken RequestToken() override
  {
    throw Exception(ErrorCode::NetworkError, "POST https://login.example/token: refused");
  }
};


HttpResponse PostThroughStowClient(LoopbackHttpServer& server)
{
  auto tokens = std::make_shared<TokenCache>(std::make_unique<FixedCredential>());
  StowClient client(server.GetUrl("/studies"), TlsSettings(), 10, tokens);
  return client.Post("body", "multipart/related; type=\"application/dicom\"; boundary=b");
}
}  // namespace


TEST(RedactionTest, FragmentOfSecretRedacted)
{
  const std::string text = "the form had client_secret=Xy8Q~abc+def/gh (cut)";

  const std::string redacted = RedactSecretsAndFragments(text, ListSecretForms({SECRET}));

  EXPECT_EQ("the form had client_secret=[REDACTED] (cut)", redacted);
}


TEST(RedactionTest, ShortRunKept)
{
  const std::string text = "Xy8Q~abc+ is nine characters of it";

  const std::string redacted = RedactSecretsAndFragments(text, ListSecretForms({SECRET}));

  EXPECT_EQ(text, redacted);
}


TEST(RedactionTest, SeparateFragmentsRedactedApart)
{
  const std::string text = "first Xy8Q~abc+def then /ghi=jkl&mn, end";

  const std::string redacted = RedactSecretsAndFragments(text, ListSecretForms({SECRET}));

  EXPECT_EQ("first [REDACTED] then [REDACTED], end", redacted);
}


TEST(RedactionTest, EncodedFragmentRedacted)
{
  const std::string text = "echo: " + UrlEncode(SECRET).substr(0, 12);

  const std::string redacted = RedactSecretsAndFragments(text, ListSecretForms({SECRET}));

  EXPECT_EQ("echo: [REDACTED]", redacted);
}


TEST(RedactionTest, WholeSecretRedactedOnce)
{
  const std::string text = std::string("value ") + SECRET + " rejected";

  const std::string redacted = RedactSecretsAndFragments(text, ListSecretForms({SECRET}));

  EXPECT_EQ("value [REDACTED] rejected", redacted);
}


TEST(RedactionTest, StowErrorBodyTokenRedacted)
{
  LoopbackHttpServer server;
  CannedResponse gateway;
  gateway.status = 401;
  gateway.headers = {{"Content-Type", "text/plain"}};
  gateway.body = std::string("request headers:\r\nauthorization: Bearer ") + TOKEN + "\r\n";
  server.Enqueue(gateway);

  const HttpResponse response = PostThroughStowClient(server);

  ASSERT_EQ(1u, server.GetRequests().size());
  EXPECT_EQ(std::string("Bearer ") + TOKEN, server.GetRequests()[0].GetHeader("authorization"));
  EXPECT_EQ(401, response.status);
  EXPECT_EQ(std::string::npos, response.body.find(TOKEN)) << response.body;
  EXPECT_NE(std::string::npos, response.body.find("authorization: Bearer [REDACTED]"))
      << response.body;
}


TEST(RedactionTest, StowErrorBodyTokenPartsRedacted)
{
  // The page quotes the token broken over two lines, then its start alone.
  const std::string token = TOKEN;
  LoopbackHttpServer server;
  CannedResponse gateway;
  gateway.status = 400;
  gateway.body = "authorization: Bearer " + token.substr(0, 30) + "\r\n  " + token.substr(30) +
                 "\r\nfirst bytes: " + token.substr(0, 16) + "...";
  server.Enqueue(gateway);

  const HttpResponse response = PostThroughStowClient(server);

  EXPECT_EQ(std::string::npos, response.body.find(token.substr(0, 16))) << response.body;
  EXPECT_EQ(std::string::npos, response.body.find(token.substr(30, 16))) << response.body;
  EXPECT_NE(std::string::npos, response.body.find("first bytes: [REDACTED]...")) << response.body;
}


TEST(RedactionTest, StowHeaderTokenRedacted)
{
  LoopbackHttpServer server;
  CannedResponse gateway;
  gateway.status = 503;
  gateway.headers = {{"X-Echo-Authorization", std::string("Bearer ") + TOKEN}};
  server.Enqueue(gateway);

  const HttpResponse response = PostThroughStowClient(server);

  EXPECT_EQ("Bearer [REDACTED]", response.GetHeader("x-echo-authorization"));
}


TEST(StowClientTest, MissingTokenIsUnauthorized)
{
  LoopbackHttpServer server;
  auto tokens = std::make_shared<TokenCache>(std::make_unique<UnreachableCredential>());
  StowClient client(server.GetUrl("/studies"), TlsSettings(), 10, tokens);

  try
  {
    client.Post("body", "multipart/related; type=\"application/dicom\"; boundary=b");
    ADD_FAILURE() << "expected an exception";
  }
  catch (const Exception& e)
  {
    EXPECT_EQ(ErrorCode::Unauthorized, e.GetCode());
    EXPECT_NE(std::string::npos, std::string(e.what()).find("refused")) << e.what();
  }

  EXPECT_EQ(0u, server.GetRequests().size());
}
