#include "Azure/HttpClient.h"
#include "Common/Exception.h"
#include "LoopbackHttpServer.h"

#include "TestSupport.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <thread>
#include <string>

using namespace AzureDicom;
using AzureDicom::Testing::CatchException;

using namespace AzureDicom::Testing;

namespace
{
const char SECRET_TOKEN[] = "Bearer eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.secret-part";


std::string MakeBinaryBody(size_t size)
{
  std::string body(size, '\0');
  for (size_t i = 0; i < size; i++)
  {
    body[i] = static_cast<char>((i * 131 + 7) % 256);
  }
  return body;
}


HttpRequest MakeRequest(const std::string& method, const std::string& url)
{
  HttpRequest request;
  request.method = method;
  request.url = url;
  return request;
}
}  // namespace


TEST(HttpClientTest, GetSendsTargetAndHeaders)
{
  LoopbackHttpServer server;
  HttpClient client{TlsSettings()};

  HttpRequest request = MakeRequest("GET", server.GetUrl("/v2/studies?limit=1"));
  request.headers = {{"Authorization", SECRET_TOKEN}, {"Accept", "application/dicom+json"}};
  const HttpResponse response = client.Execute(request);

  EXPECT_EQ(200, response.status);
  const auto requests = server.GetRequests();
  ASSERT_EQ(1u, requests.size());
  EXPECT_EQ("GET", requests[0].method);
  EXPECT_EQ("/v2/studies?limit=1", requests[0].target);
  EXPECT_EQ(SECRET_TOKEN, requests[0].GetHeader("authorization"));
  EXPECT_EQ("application/dicom+json", requests[0].GetHeader("accept"));
  EXPECT_EQ("identity", requests[0].GetHeader("accept-encoding"));
  EXPECT_EQ("", requests[0].body);
}


TEST(HttpClientTest, PostSendsBodyBytes)
{
  LoopbackHttpServer server;
  HttpClient client{TlsSettings()};

  // Larger than the 1 MiB above which libcurl 7.88 would send "Expect: 100-continue".
  const std::string body = MakeBinaryBody(3 * 1024 * 1024 + 17);
  HttpRequest request = MakeRequest("POST", server.GetUrl("/studies"));
  request.headers = {{"Content-Type", "multipart/related; type=\"application/dicom\""}};
  request.body = &body;
  client.Execute(request);

  const auto requests = server.GetRequests();
  ASSERT_EQ(1u, requests.size());
  EXPECT_EQ("POST", requests[0].method);
  EXPECT_EQ(std::to_string(body.size()), requests[0].GetHeader("content-length"));
  EXPECT_TRUE(requests[0].body == body);
  EXPECT_FALSE(requests[0].HasHeader("expect"));
  EXPECT_EQ("multipart/related; type=\"application/dicom\"", requests[0].GetHeader("content-type"));
}


TEST(HttpClientTest, PostWithoutContentType)
{
  LoopbackHttpServer server;
  HttpClient client{TlsSettings()};

  const std::string body = "a=b";
  HttpRequest request = MakeRequest("POST", server.GetUrl("/plain"));
  request.body = &body;
  client.Execute(request);

  const auto requests = server.GetRequests();
  ASSERT_EQ(1u, requests.size());
  EXPECT_FALSE(requests[0].HasHeader("content-type"));
  EXPECT_EQ("a=b", requests[0].body);
}


TEST(HttpClientTest, PostWithoutBody)
{
  LoopbackHttpServer server;
  HttpClient client{TlsSettings()};

  client.Execute(MakeRequest("POST", server.GetUrl("/empty")));

  const auto requests = server.GetRequests();
  ASSERT_EQ(1u, requests.size());
  EXPECT_EQ("POST", requests[0].method);
  EXPECT_EQ("0", requests[0].GetHeader("content-length"));
}


TEST(HttpClientTest, PutAndDeleteMethods)
{
  LoopbackHttpServer server;
  HttpClient client{TlsSettings()};

  const std::string body = "{\"Label\": \"x\"}";
  HttpRequest put = MakeRequest("PUT", server.GetUrl("/settings"));
  put.headers = {{"Content-Type", "application/json"}};
  put.body = &body;
  client.Execute(put);
  client.Execute(MakeRequest("DELETE", server.GetUrl("/studies/1.2.3")));

  const auto requests = server.GetRequests();
  ASSERT_EQ(2u, requests.size());
  EXPECT_EQ("PUT", requests[0].method);
  EXPECT_EQ(body, requests[0].body);
  EXPECT_EQ("DELETE", requests[1].method);
  EXPECT_EQ("/studies/1.2.3", requests[1].target);
  EXPECT_EQ("", requests[1].body);
}


TEST(HttpClientTest, GetAfterPostHasNoBody)
{
  LoopbackHttpServer server;
  HttpClient client{TlsSettings()};

  const std::string body = "first";
  HttpRequest post = MakeRequest("POST", server.GetUrl("/one"));
  post.body = &body;
  client.Execute(post);
  client.Execute(MakeRequest("GET", server.GetUrl("/two")));

  const auto requests = server.GetRequests();
  ASSERT_EQ(2u, requests.size());
  EXPECT_EQ("GET", requests[1].method);
  EXPECT_EQ("", requests[1].body);
  EXPECT_FALSE(requests[1].HasHeader("content-length"));
}


TEST(HttpClientTest, ReusesConnection)
{
  LoopbackHttpServer server;

  {
    HttpClient client{TlsSettings()};
    client.Execute(MakeRequest("GET", server.GetUrl("/a")));
    client.Execute(MakeRequest("GET", server.GetUrl("/b")));
    EXPECT_EQ(1, server.GetAcceptCount());
  }

  HttpClient otherClient{TlsSettings()};
  otherClient.Execute(MakeRequest("GET", server.GetUrl("/c")));

  const auto requests = server.GetRequests();
  ASSERT_EQ(3u, requests.size());
  EXPECT_EQ(1, requests[0].connection);
  EXPECT_EQ(1, requests[1].connection);
  EXPECT_EQ(2, requests[2].connection);
  EXPECT_EQ(2, server.GetAcceptCount());
}


TEST(HttpClientTest, TimeoutIsNetworkError)
{
  LoopbackHttpServer server;
  CannedResponse silent;
  silent.silent = true;
  server.Enqueue(silent);
  HttpClient client{TlsSettings()};

  const std::string body = "payload";
  HttpRequest request = MakeRequest("POST", server.GetUrl("/slow"));
  request.headers = {{"Authorization", SECRET_TOKEN}};
  request.body = &body;
  request.timeoutSeconds = 1;

  const Exception e = CatchException([&] { client.Execute(request); });
  const std::string message = e.what();

  EXPECT_EQ(ErrorCode::NetworkError, e.GetCode());
  EXPECT_EQ(0u, message.find("POST " + server.GetUrl("/slow") + ": ")) << message;
  EXPECT_NE(std::string::npos, message.find("timed out")) << message;
  EXPECT_NE(std::string::npos, message.find("(28)")) << message;
  EXPECT_EQ(std::string::npos, message.find("secret-part")) << message;
}


TEST(HttpClientTest, RefusedPortIsNetworkError)
{
  // A socket that is bound but not listening keeps the port, so the connection is refused
  // and no other process can take the port during the test.
  const int holder = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(holder, 0);
  sockaddr_in address = LoopbackHttpServer::MakeLoopbackAddress(0);
  socklen_t length = sizeof(address);
  ASSERT_EQ(0, bind(holder, reinterpret_cast<sockaddr*>(&address), sizeof(address)));
  ASSERT_EQ(0, getsockname(holder, reinterpret_cast<sockaddr*>(&address), &length));
  const std::string url =
      "http://127.0.0.1:" + std::to_string(ntohs(address.sin_port)) + "/v2/studies";

  HttpClient client{TlsSettings()};
  const Exception e = CatchException([&] { client.Execute(MakeRequest("GET", url)); });
  const std::string message = e.what();
  close(holder);

  EXPECT_EQ(ErrorCode::NetworkError, e.GetCode());
  EXPECT_EQ(0u, message.find("GET " + url + ": ")) << message;
  EXPECT_NE(std::string::npos, message.find("(7)")) << message;
}


TEST(HttpClientTest, BodyCapTruncates)
{
  LoopbackHttpServer server;
  CannedResponse large;
  large.body = MakeBinaryBody(5000);
  server.Enqueue(large);
  CannedResponse next;
  next.body = "next";
  server.Enqueue(next);
  HttpClient client(TlsSettings(), 1000);

  const HttpResponse first = client.Execute(MakeRequest("GET", server.GetUrl("/large")));
  const HttpResponse second = client.Execute(MakeRequest("GET", server.GetUrl("/next")));

  EXPECT_EQ(1000u, first.body.size());
  EXPECT_TRUE(first.truncated);
  EXPECT_TRUE(first.body == large.body.substr(0, 1000));
  EXPECT_EQ("next", second.body);
  EXPECT_FALSE(second.truncated);
  EXPECT_EQ(1, server.GetAcceptCount());
}


TEST(HttpClientTest, BodyAtCapKept)
{
  LoopbackHttpServer server;
  CannedResponse exact;
  exact.body = std::string(1000, 'x');
  server.Enqueue(exact);
  HttpClient client(TlsSettings(), 1000);

  const HttpResponse response = client.Execute(MakeRequest("GET", server.GetUrl("/exact")));

  EXPECT_EQ(exact.body, response.body);
  EXPECT_FALSE(response.truncated);
}


TEST(HttpClientTest, ResponseHeadersLowerCase)
{
  LoopbackHttpServer server;
  CannedResponse busy;
  busy.status = 503;
  busy.headers = {{"Content-Type", "text/plain"},
                  {"Retry-After", " 7 "},
                  {"X-Mixed-Case", "Value With Case"},
                  {"X-Repeated", "one"},
                  {"X-Repeated", "two"}};
  busy.body = "Service Unavailable";
  server.Enqueue(busy);
  HttpClient client{TlsSettings()};

  const HttpResponse response = client.Execute(MakeRequest("GET", server.GetUrl("/busy")));

  EXPECT_EQ(503, response.status);
  EXPECT_EQ("Service Unavailable", response.body);
  EXPECT_EQ("text/plain", response.GetHeader("content-type"));
  EXPECT_EQ("7", response.GetHeader("retry-after"));
  EXPECT_EQ("Value With Case", response.GetHeader("x-mixed-case"));
  EXPECT_EQ("one, two", response.GetHeader("x-repeated"));
  EXPECT_EQ("", response.GetHeader("X-Mixed-Case"));
  EXPECT_EQ("", response.GetHeader("absent"));
}


TEST(HttpClientTest, InterimResponseHeadersDropped)
{
  LoopbackHttpServer server;
  CannedResponse interim;
  interim.raw =
      "HTTP/1.1 100 Continue\r\nX-Interim: yes\r\n\r\n"
      "HTTP/1.1 201 Created\r\nX-Final: yes\r\nContent-Length: 4\r\n\r\ndone";
  server.Enqueue(interim);
  HttpClient client{TlsSettings()};

  const std::string body = "payload";
  HttpRequest request = MakeRequest("POST", server.GetUrl("/studies"));
  request.body = &body;
  const HttpResponse response = client.Execute(request);

  EXPECT_EQ(201, response.status);
  EXPECT_EQ("done", response.body);
  EXPECT_EQ("yes", response.GetHeader("x-final"));
  EXPECT_EQ(0u, response.headers.count("x-interim"));
}


TEST(HttpClientTest, RedirectNotFollowed)
{
  LoopbackHttpServer server;
  CannedResponse redirect;
  redirect.status = 302;
  redirect.headers = {{"Location", server.GetUrl("/elsewhere")}};
  server.Enqueue(redirect);
  HttpClient client{TlsSettings()};

  const HttpResponse response = client.Execute(MakeRequest("GET", server.GetUrl("/moved")));

  EXPECT_EQ(302, response.status);
  EXPECT_EQ(server.GetUrl("/elsewhere"), response.GetHeader("location"));
  EXPECT_EQ(1u, server.GetRequests().size());
}


TEST(HttpClientTest, ElapsedMsMeasured)
{
  LoopbackHttpServer server;
  CannedResponse delayed;
  delayed.delayMs = 200;
  server.Enqueue(delayed);
  HttpClient client{TlsSettings()};

  const HttpResponse response = client.Execute(MakeRequest("GET", server.GetUrl("/delayed")));

  EXPECT_GE(response.elapsedMs, 200.0);
  EXPECT_LT(response.elapsedMs, 10000.0);
}


TEST(HttpClientTest, EmptyHeaderValueSent)
{
  LoopbackHttpServer server;
  HttpClient client{TlsSettings()};

  HttpRequest request = MakeRequest("GET", server.GetUrl("/"));
  request.headers = {{"X-Empty", ""}};
  client.Execute(request);

  const auto requests = server.GetRequests();
  ASSERT_EQ(1u, requests.size());
  EXPECT_TRUE(requests[0].HasHeader("x-empty"));
  EXPECT_EQ("", requests[0].GetHeader("x-empty"));
}


TEST(HttpClientTest, UnsupportedMethodRejected)
{
  LoopbackHttpServer server;
  HttpClient client{TlsSettings()};

  const Exception e =
      CatchException([&] { client.Execute(MakeRequest("PATCH", server.GetUrl("/x"))); });
  const std::string message = e.what();

  EXPECT_EQ(ErrorCode::InternalError, e.GetCode());
  EXPECT_NE(std::string::npos, message.find("PATCH")) << message;
  EXPECT_NE(std::string::npos, message.find(server.GetUrl("/x"))) << message;
  EXPECT_EQ(0u, server.GetRequests().size());
}


TEST(HttpClientTest, HeaderLineBreakRejected)
{
  LoopbackHttpServer server;
  HttpClient client{TlsSettings()};

  HttpRequest request = MakeRequest("GET", server.GetUrl("/x"));
  request.headers = {{"Authorization", "Bearer abc\r\nX-Injected: secret-part"}};
  const Exception e = CatchException([&] { client.Execute(request); });
  const std::string message = e.what();

  EXPECT_EQ(ErrorCode::InternalError, e.GetCode());
  EXPECT_NE(std::string::npos, message.find("\"Authorization\"")) << message;
  EXPECT_EQ(std::string::npos, message.find("secret-part")) << message;
  EXPECT_EQ(0u, server.GetRequests().size());
}


TEST(HttpClientTest, MissingCaFileRejected)
{
  LoopbackHttpServer server;
  TlsSettings tls;
  tls.caCertificates = "/nonexistent/ca-bundle.pem";
  HttpClient client(tls);

  // libcurl reads the CA file when a TLS connection starts, so plain http is not affected.
  EXPECT_EQ(200, client.Execute(MakeRequest("GET", server.GetUrl("/"))).status);

  const std::string httpsUrl = "https://127.0.0.1:" + std::to_string(server.GetPort()) + "/";
  const Exception e = CatchException([&] { client.Execute(MakeRequest("GET", httpsUrl)); });
  const std::string message = e.what();

  EXPECT_EQ(ErrorCode::NetworkError, e.GetCode());
  EXPECT_EQ(0u, message.find("GET " + httpsUrl + ": ")) << message;
  EXPECT_NE(std::string::npos, message.find("(77)")) << message;
}


TEST(HttpClientTest, InvalidPemCaRejected)
{
  LoopbackHttpServer server;
  TlsSettings tls;
  tls.caCertificates =
      "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n"
      "-----END CERTIFICATE-----\n";
  HttpClient client(tls);

  const std::string httpsUrl = "https://127.0.0.1:" + std::to_string(server.GetPort()) + "/";
  const Exception e = CatchException([&] { client.Execute(MakeRequest("GET", httpsUrl)); });
  const std::string message = e.what();

  EXPECT_EQ(ErrorCode::NetworkError, e.GetCode());
  EXPECT_NE(std::string::npos, message.find("(77)")) << message;
}


TEST(HttpClientTest, UrlEncodeReservedCharacters)
{
  EXPECT_EQ("AZaz09-._~", UrlEncode("AZaz09-._~"));
  EXPECT_EQ("a%20b%2Bc%26d%3De%2Ff%3Fg%25", UrlEncode("a b+c&d=e/f?g%"));
  EXPECT_EQ("https%3A%2F%2Fdicom.healthcareapis.azure.com%2F.default",
            UrlEncode("https://dicom.healthcareapis.azure.com/.default"));
  EXPECT_EQ("%C3%A9%00%FF", UrlEncode(std::string("\xC3\xA9\x00\xFF", 4)));
  EXPECT_EQ("", UrlEncode(""));
}


TEST(HttpClientTest, AbortFlagCutsRequest)
{
  LoopbackHttpServer server;
  CannedResponse silent;
  silent.silent = true;
  server.Enqueue(silent);

  std::atomic<bool> abort{false};
  HttpClient client{TlsSettings()};
  client.SetAbortFlag(&abort);

  HttpRequest request = MakeRequest("GET", server.GetUrl("/silent"));
  request.timeoutSeconds = 60;

  std::thread stopper([&abort] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    abort = true;
  });

  const auto start = std::chrono::steady_clock::now();
  const Exception e = CatchException([&] { client.Execute(request); });
  const auto elapsed = std::chrono::steady_clock::now() - start;
  stopper.join();

  EXPECT_EQ(ErrorCode::NetworkError, e.GetCode());
  EXPECT_LT(elapsed, std::chrono::seconds(10));
}


TEST(HttpClientTest, AllAbortedCutsRequest)
{
  LoopbackHttpServer server;
  CannedResponse silent;
  silent.silent = true;
  server.Enqueue(silent);

  HttpClient client{TlsSettings()};
  HttpRequest request = MakeRequest("GET", server.GetUrl("/silent"));
  request.timeoutSeconds = 60;

  std::thread stopper(
      []
      {
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        HttpClient::SetAllAborted(true);
      });

  const auto start = std::chrono::steady_clock::now();
  const Exception e = CatchException([&] { client.Execute(request); });
  const auto elapsed = std::chrono::steady_clock::now() - start;
  stopper.join();
  HttpClient::SetAllAborted(false);

  EXPECT_EQ(ErrorCode::NetworkError, e.GetCode());
  EXPECT_LT(elapsed, std::chrono::seconds(10));
}


TEST(HttpClientTest, AllAbortedSendsNothing)
{
  LoopbackHttpServer server;
  HttpClient client{TlsSettings()};

  HttpClient::SetAllAborted(true);
  const Exception e =
      CatchException([&] { client.Execute(MakeRequest("GET", server.GetUrl("/never"))); });
  HttpClient::SetAllAborted(false);
  const HttpResponse after = client.Execute(MakeRequest("GET", server.GetUrl("/after")));

  EXPECT_EQ(ErrorCode::NetworkError, e.GetCode());
  EXPECT_NE(std::string::npos, std::string(e.what()).find("the plugin is stopping")) << e.what();
  EXPECT_EQ(200, after.status);
  ASSERT_EQ(1u, server.GetRequests().size());
  EXPECT_EQ("/after", server.GetRequests()[0].target);
}


// Bodies in pieces (HttpRequest::pieces), streamed through libcurl's read callback.

namespace
{
const char MULTIPART_TYPE[] = "multipart/related; type=\"application/dicom\"; boundary=b";


// The segments of a RequestBody and the bytes that they refer to, which must outlive it.
struct PiecesFixture
{
  std::vector<std::string> segments;
  RequestBody body;
  std::string joined;

  explicit PiecesFixture(std::vector<std::string> texts) : segments(std::move(texts))
  {
    for (const std::string& segment : segments)
    {
      body.Add(segment.data(), segment.size());
      joined += segment;
    }
  }

  // A copy would refer to the bytes of the original.
  PiecesFixture(const PiecesFixture&) = delete;
  PiecesFixture& operator=(const PiecesFixture&) = delete;
};


// Several segments, two of them empty and one just over 3 MiB, so that a read of libcurl's upload
// buffer spans segment ends.
PiecesFixture MakeMixedPieces()
{
  return PiecesFixture({"--b\r\nContent-Type: application/dicom\r\n\r\n", "",
                        MakeBinaryBody(3 * 1024 * 1024 + 5), "\r\n--b\r\n", "", "x",
                        MakeBinaryBody(70000), "\r\n--b--\r\n"});
}


HttpRequest MakePiecesRequest(const std::string& method, const std::string& url,
                              const RequestBody& pieces)
{
  HttpRequest request = MakeRequest(method, url);
  request.headers = {{"Content-Type", MULTIPART_TYPE}};
  request.pieces = &pieces;
  return request;
}
}  // namespace


TEST(HttpClientTest, PostPiecesArriveByteExact)
{
  LoopbackHttpServer server;
  HttpClient client{TlsSettings()};
  const PiecesFixture pieces = MakeMixedPieces();

  const HttpResponse response =
      client.Execute(MakePiecesRequest("POST", server.GetUrl("/v2/studies"), pieces.body));

  EXPECT_EQ(200, response.status);
  const auto requests = server.GetRequests();
  ASSERT_EQ(1u, requests.size());
  EXPECT_EQ("POST", requests[0].method);
  EXPECT_EQ("/v2/studies", requests[0].target);
  EXPECT_EQ(std::to_string(pieces.joined.size()), requests[0].GetHeader("content-length"));
  EXPECT_EQ(pieces.joined.size(), requests[0].body.size());
  EXPECT_TRUE(requests[0].body == pieces.joined);
  EXPECT_EQ(MULTIPART_TYPE, requests[0].GetHeader("content-type"));
  EXPECT_FALSE(requests[0].HasHeader("transfer-encoding"));
}


TEST(HttpClientTest, PutPiecesArriveByteExact)
{
  LoopbackHttpServer server;
  HttpClient client{TlsSettings()};
  const PiecesFixture pieces = MakeMixedPieces();

  client.Execute(MakePiecesRequest("PUT", server.GetUrl("/v2/studies"), pieces.body));

  const auto requests = server.GetRequests();
  ASSERT_EQ(1u, requests.size());
  EXPECT_EQ("PUT", requests[0].method);
  EXPECT_EQ(std::to_string(pieces.joined.size()), requests[0].GetHeader("content-length"));
  EXPECT_TRUE(requests[0].body == pieces.joined);
  EXPECT_EQ(MULTIPART_TYPE, requests[0].GetHeader("content-type"));
}


TEST(HttpClientTest, PiecesOfOneByteEach)
{
  LoopbackHttpServer server;
  HttpClient client{TlsSettings()};
  std::vector<std::string> bytes;
  for (int i = 0; i < 300; i++)
  {
    bytes.push_back(std::string(1, static_cast<char>(i)));
    bytes.push_back("");
  }
  const PiecesFixture pieces(bytes);

  client.Execute(MakePiecesRequest("POST", server.GetUrl("/bytes"), pieces.body));

  const auto requests = server.GetRequests();
  ASSERT_EQ(1u, requests.size());
  EXPECT_EQ("300", requests[0].GetHeader("content-length"));
  EXPECT_TRUE(requests[0].body == pieces.joined);
}


TEST(HttpClientTest, EmptyPiecesSendZeroLength)
{
  LoopbackHttpServer server;
  HttpClient client{TlsSettings()};
  const PiecesFixture none(std::vector<std::string>{});
  const PiecesFixture empty({"", ""});

  client.Execute(MakePiecesRequest("POST", server.GetUrl("/none"), none.body));
  client.Execute(MakePiecesRequest("PUT", server.GetUrl("/empty"), empty.body));

  const auto requests = server.GetRequests();
  ASSERT_EQ(2u, requests.size());
  EXPECT_EQ("POST", requests[0].method);
  EXPECT_EQ("0", requests[0].GetHeader("content-length"));
  EXPECT_EQ("", requests[0].body);
  EXPECT_EQ("PUT", requests[1].method);
  EXPECT_EQ("0", requests[1].GetHeader("content-length"));
}


TEST(HttpClientTest, PlainBodyAfterPieces)
{
  LoopbackHttpServer server;
  HttpClient client{TlsSettings()};
  const PiecesFixture pieces = MakeMixedPieces();
  const std::string plain = "{\"Label\": \"after pieces\"}";

  client.Execute(MakePiecesRequest("POST", server.GetUrl("/pieces"), pieces.body));

  HttpRequest post = MakeRequest("POST", server.GetUrl("/plain"));
  post.headers = {{"Content-Type", "application/json"}};
  post.body = &plain;
  client.Execute(post);

  HttpRequest put = MakeRequest("PUT", server.GetUrl("/plain-put"));
  put.body = &plain;
  client.Execute(put);

  client.Execute(MakeRequest("GET", server.GetUrl("/get")));
  client.Execute(MakePiecesRequest("PUT", server.GetUrl("/pieces-again"), pieces.body));

  const auto requests = server.GetRequests();
  ASSERT_EQ(5u, requests.size());

  EXPECT_EQ("POST", requests[1].method);
  EXPECT_EQ(std::to_string(plain.size()), requests[1].GetHeader("content-length"));
  EXPECT_EQ(plain, requests[1].body);
  EXPECT_EQ("application/json", requests[1].GetHeader("content-type"));

  EXPECT_EQ("PUT", requests[2].method);
  EXPECT_EQ(plain, requests[2].body);

  EXPECT_EQ("GET", requests[3].method);
  EXPECT_FALSE(requests[3].HasHeader("content-length"));
  EXPECT_EQ("", requests[3].body);

  EXPECT_EQ("PUT", requests[4].method);
  EXPECT_TRUE(requests[4].body == pieces.joined);

  // All five requests went over the one connection of the client.
  EXPECT_EQ(1, server.GetAcceptCount());
}


// Deferred pieces (IDeferredBuffer), loaded by the read callback when the upload reaches them.

namespace
{
// A deferred piece with fixed content that counts the loaded copies alive, and can fail.
class CountingDeferredPiece : public IDeferredBuffer
{
public:
  CountingDeferredPiece(std::string content, int& live, int& peak) :
      content_(std::move(content)), live_(live), peak_(peak)
  {
  }

  uint64_t GetSize() const override
  {
    return content_.size();
  }

  std::unique_ptr<IBuffer> Load() noexcept override
  {
    loads++;
    if (fail)
    {
      return nullptr;
    }
    auto loaded = std::make_unique<Testing::CountedBuffer>(content_, live_);
    peak_ = std::max(peak_, live_);
    return loaded;
  }

  bool fail = false;
  int loads = 0;

private:
  std::string content_;
  int& live_;
  int& peak_;
};
}  // namespace


TEST(HttpClientTest, DeferredPiecesArriveByteExact)
{
  LoopbackHttpServer server;
  HttpClient client{TlsSettings()};
  int live = 0;
  int peak = 0;
  CountingDeferredPiece first(MakeBinaryBody(3 * 1024 * 1024 + 7), live, peak);
  CountingDeferredPiece second(MakeBinaryBody(70001), live, peak);
  const std::string head = "--b\r\nContent-Type: application/dicom\r\n\r\n";
  const std::string middle = "\r\n--b\r\nContent-Type: application/dicom\r\n\r\n";
  const std::string tail = "\r\n--b--\r\n";
  RequestBody body;
  body.Add(head.data(), head.size());
  body.AddDeferred(first);
  body.Add(middle.data(), middle.size());
  body.AddDeferred(second);
  body.Add(tail.data(), tail.size());

  const HttpResponse response =
      client.Execute(MakePiecesRequest("POST", server.GetUrl("/v2/studies"), body));

  EXPECT_EQ(200, response.status);
  const auto requests = server.GetRequests();
  ASSERT_EQ(1u, requests.size());
  const std::string expected = head + MakeBinaryBody(3 * 1024 * 1024 + 7) + middle +
                               MakeBinaryBody(70001) + tail;
  EXPECT_EQ(std::to_string(expected.size()), requests[0].GetHeader("content-length"));
  EXPECT_TRUE(requests[0].body == expected);

  // Each piece is loaded once, and released before the next one is loaded.
  EXPECT_EQ(1, first.loads);
  EXPECT_EQ(1, second.loads);
  EXPECT_EQ(1, peak);
  EXPECT_EQ(0, live);
}


TEST(HttpClientTest, FailedDeferredPieceAbortsUpload)
{
  LoopbackHttpServer server;
  HttpClient client{TlsSettings()};
  int live = 0;
  int peak = 0;
  CountingDeferredPiece first(MakeBinaryBody(1000), live, peak);
  CountingDeferredPiece second(MakeBinaryBody(1000), live, peak);
  second.fail = true;
  RequestBody body;
  body.AddDeferred(first);
  body.AddDeferred(second);

  const Exception error = Testing::CatchException(
      [&] { client.Execute(MakePiecesRequest("POST", server.GetUrl("/v2/studies"), body)); });

  EXPECT_EQ(ErrorCode::NetworkError, error.GetCode());
  EXPECT_NE(std::string::npos, std::string(error.what()).find("/v2/studies")) << error.what();
  EXPECT_EQ(1, second.loads);
  EXPECT_EQ(0, live);
}
