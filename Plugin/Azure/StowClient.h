#pragma once

#include "Azure/Credential.h"
#include "Azure/HttpClient.h"
#include "Sync/Dispatcher.h"

#include <memory>
#include <string>

namespace AzureDicom
{
// Posts STOW-RS bodies to the service over one reused connection, with a bearer token from the
// shared token cache (none when the credential type is None).
class StowClient : public IStowSender
{
public:
  StowClient(const std::string& stowUrl, const TlsSettings& tls, unsigned int timeoutSeconds,
             std::shared_ptr<TokenCache> tokens);

  HttpResponse Post(const std::string& body, const std::string& contentType) override;

  HttpResponse Put(const std::string& body, const std::string& contentType) override;

  HttpResponse Delete(const std::string& url) override;

  // Streams the pieces to the connection without joining them.
  HttpResponse Send(const RequestBody& body, const std::string& contentType, bool upsert) override;

  void InvalidateToken() override;

  void SetAbortFlag(const std::atomic<bool>* flag) override
  {
    http_.SetAbortFlag(flag);
  }

private:
  HttpResponse Execute(const std::string& method, const std::string& url,
                       const std::string* body, const RequestBody* pieces,
                       const std::string& contentType);

  std::string stowUrl_;
  unsigned int timeoutSeconds_;
  std::shared_ptr<TokenCache> tokens_;
  std::string lastToken_;
  HttpClient http_;
};
}  // namespace AzureDicom
